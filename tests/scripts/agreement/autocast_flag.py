"""Mixed precision only under a flag: `--dtype bfloat16` turns autocast on."""
import argparse
from contextlib import nullcontext

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
parser.add_argument("--steps", type=int, default=4)
args = parser.parse_args()

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
ctx = nullcontext()
if args.dtype == "bfloat16":
    ctx = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
for _ in range(args.steps):
    x = torch.randn(4, 8)
    with ctx:
        loss = model(x).float().pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
