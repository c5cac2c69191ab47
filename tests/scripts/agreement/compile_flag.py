"""torch.compile only with `--compile`."""
import argparse

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--compile", action="store_true", help="compile the model")
args = parser.parse_args()

model = torch.nn.Linear(8, 1)
if args.compile:
    model = torch.compile(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x in [torch.randn(4, 8) for _ in range(4)]:
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
