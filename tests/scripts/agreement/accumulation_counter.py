"""Accumulation: a counter of micro-batches, reset when the optimizer steps."""
import torch

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
micro = 0
for x in [torch.randn(4, 8) for _ in range(8)]:
    loss = model(x).pow(2).mean()
    loss.backward()
    micro += 1
    if micro == 4:
        optimizer.step()
        optimizer.zero_grad()
        micro = 0
