# Tests (issue 11, misread 7): a script that refuses a second run in its folder (it counts its
# runs in a file). Every --verify re-run fails at the raise below; ccprof must say so with this
# line, keep the baseline's measurement, and exit 5.
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

n = int(open("runs.txt").read()) if os.path.isfile("runs.txt") else 0
open("runs.txt", "w").write(str(n + 1))
if n >= 1:
    raise RuntimeError("this script runs once per folder: remove runs.txt to run it again")
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(100):
    x = torch.randn(32, 16)
    loss = F.mse_loss(model(x), x)
    opt.zero_grad()
    loss.backward()
    opt.step()
