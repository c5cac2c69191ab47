# Tests: a closure optimizer (torch.optim.LBFGS): optimizer.step(closure) calls forward and
# backward several times inside one step.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4, history_size=10)
x = torch.randn(128, 8)
y = torch.sin(x.sum(dim=1, keepdim=True))

for step in range(200):
    def closure():
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    if step % 20 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
