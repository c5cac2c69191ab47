# Tests: a float64 model. Autocast leaves float64 tensors alone; the lever is the line that makes
# the model float64 (`--style double`: `.double()`, `dtype`: `dtype=torch.float64` on the layers,
# `default`: `torch.set_default_dtype(torch.float64)`).
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--style", default="double", choices=["double", "dtype", "default"])
args = parser.parse_args()

torch.manual_seed(0)
if args.style == "default":
    torch.set_default_dtype(torch.float64)
if args.style == "dtype":
    model = nn.Sequential(nn.Linear(64, 512, dtype=torch.float64), nn.Tanh(), nn.Linear(512, 512, dtype=torch.float64),
                          nn.Tanh(), nn.Linear(512, 1, dtype=torch.float64))
else:
    model = nn.Sequential(nn.Linear(64, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 1))
if args.style == "double":
    model = model.double()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for step in range(200):
    x = torch.randn(256, 64, dtype=torch.float64)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    loss = F.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
