"""Not accumulation: `accumulated_loss` only logs; the optimizer steps every batch."""
import torch

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
data = [torch.randn(4, 8) for _ in range(8)]
accumulated_loss = 0.0
for step, x in enumerate(data):
    optimizer.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    accumulated_loss += loss.item()
    if step % 4 == 0:
        print(accumulated_loss / (step + 1))
