# Tests: an optimizer that is fused only on CUDA: `fused=` reads the device (nanoGPT's
# `use_fused = fused_available and device_type == 'cuda'`, or `fused=torch.cuda.is_available()`).
# On a CPU host the run is unfused; the target GPU's run is fused.
import argparse
import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--style", default="signature", choices=["signature", "available"])
args = parser.parse_args()

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
device_type = "cuda" if "cuda" in device else "cpu"
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4)).to(device)
if args.style == "signature":
    fused_available = "fused" in inspect.signature(torch.optim.AdamW).parameters
    use_fused = fused_available and device_type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=use_fused)
else:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=torch.cuda.is_available())

for step in range(200):
    x = torch.randn(32, 64, device=device)
    y = torch.randint(0, 4, (32,), device=device)
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
