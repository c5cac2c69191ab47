# Tests (issue 11, misread 7): like run_clm without --overwrite_output_dir, the script refuses to
# start when its output folder exists. The baseline run makes it, so every --verify re-run fails
# at the makedirs line; ccprof must say so with that line and exit 5.
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

os.makedirs("run-output", exist_ok=False)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(100):
    x = torch.randn(32, 16)
    loss = F.mse_loss(model(x), x)
    opt.zero_grad()
    loss.backward()
    opt.step()
