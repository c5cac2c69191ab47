# Tests: parameters updated by hand through p.data, as pytorch/examples' word_language_model does:
# no torch.optim optimizer, and no version bump on the parameters themselves.
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
    model.zero_grad()
    loss = F.mse_loss(model(x), y)
    loss.backward()
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-lr)
