"""A plain loop that holds autocast, TF32 and torch.compile behind options (issue 20: a tweak the
script has but the run left off is advised as "turn it on", not new code, not already applied)."""
import argparse

import torch

p = argparse.ArgumentParser()
p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
p.add_argument("--compile", action="store_true")
p.add_argument("--steps", type=int, default=8)
args = p.parse_args()

torch.manual_seed(0)
# a block with non-matmul ops between its matmuls (norm, activation, dropout): what torch.compile(model) fuses
model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.LayerNorm(4096), torch.nn.GELU(),
                            torch.nn.Dropout(0.1), torch.nn.Linear(4096, 1024))
if args.compile:
    model = torch.compile(model)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
for step in range(args.steps):
    x = torch.randn(512, 1024)
    with amp:
        loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
