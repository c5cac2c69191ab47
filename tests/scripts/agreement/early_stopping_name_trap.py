"""Not early stopping: `patience` belongs to the learning-rate scheduler."""
import torch

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=2)
for epoch in range(5):
    for x in [torch.randn(4, 8) for _ in range(4)]:
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    val_loss = model(torch.randn(16, 8)).pow(2).mean().item()
    scheduler.step(val_loss)
