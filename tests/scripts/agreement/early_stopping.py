"""Hand-written early stopping: patience on the validation loss, then break."""
import torch

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
best, bad_epochs, patience = float("inf"), 0, 3
for epoch in range(50):
    for x in [torch.randn(4, 8) for _ in range(4)]:
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        val_loss = model(torch.randn(16, 8)).pow(2).mean().item()
    if val_loss < best:
        best, bad_epochs = val_loss, 0
    else:
        bad_epochs += 1
    if bad_epochs >= patience:
        break
