# Tests: a script that exec()s a config file found next to itself through
# open(os.path.join(os.path.dirname(__file__), ...)), so __file__ must be the script's path.
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

steps, batch_size, lr, hidden = 10, 4, 1e-3, 8  # defaults, overridden by the config
with open(os.path.join(os.path.dirname(__file__), "config_train.py")) as f:
    exec(f.read())
print(f"config: steps={steps} batch_size={batch_size} lr={lr} hidden={hidden}")
assert steps == 200, "config_train.py was not read"

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
for step in range(steps):
    x = torch.randn(batch_size, 4)
    loss = F.mse_loss(model(x), x.sum(dim=1, keepdim=True))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 20 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
