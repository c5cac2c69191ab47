"""A DataLoader with workers, pinned memory and persistent workers; the count is a flag."""
import argparse

import torch
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--workers", type=int, default=2)
args = parser.parse_args()

dataset = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=args.workers, pin_memory=True,
                    persistent_workers=args.workers > 0)
model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
