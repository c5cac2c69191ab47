"""fp16 with a GradScaler, both enabled by `--amp` (the `enabled=` keyword is the flag)."""
import argparse

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--amp", action="store_true")
args = parser.parse_args()

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = torch.amp.GradScaler("cuda", enabled=args.amp)
for x in [torch.randn(4, 8) for _ in range(4)]:
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=args.amp):
        loss = model(x).float().pow(2).mean()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad()
