# Tests: training with no torch.optim optimizer; parameters are updated by hand under
# torch.no_grad() after loss.backward(), so a "step" is one backward that updates params.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
w_true = torch.randn(16, 1)
lr = 0.05

for step in range(200):
    x = torch.randn(32, 16)
    y = x @ w_true
    loss = F.mse_loss(model(x), y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
            p.grad = None
    if step % 20 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
