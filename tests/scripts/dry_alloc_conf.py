"""A small cuda training loop for --dry-run's allocator settings: run it with PYTORCH_CUDA_ALLOC_CONF set,
or with --set-settings, which sets them as torchtitan-style scripts do, by call, before the model is made."""
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--set-settings", default="", help="torch.cuda.memory._set_allocator_settings(...) first")
args = parser.parse_args()
if args.set_settings:
    torch.cuda.memory._set_allocator_settings(args.set_settings)

model = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024)).cuda()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(6):
    x = torch.randn(64 + step, 1024, device="cuda")        # the batch grows by a row each step
    loss = model(x).square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
