"""Mixed precision set on `Accelerator(...)` from an option (`--mixed_precision`, default "no"): in
effect only when the run passes bf16/fp16; turned on from the command line, never written twice."""
import argparse

import torch
from accelerate import Accelerator

parser = argparse.ArgumentParser()
parser.add_argument("--mixed_precision", type=str, default="no", choices=["no", "fp16", "bf16"])
args = parser.parse_args()

accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=True)
model = torch.nn.Linear(8, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = accelerator.prepare(model, optimizer)
for _ in range(3):
    loss = model(torch.randn(4, 8)).pow(2).mean()
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
