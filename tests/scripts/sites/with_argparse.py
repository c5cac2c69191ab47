"""Sites test: an argparse option `--bs` (dest batch_size) feeds a loader built in data.py; an
evaluation loader with a literal batch size; the forward called in a helper function."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from data import get_dataloader, make_dataset
from torch.utils.data import DataLoader

parser = argparse.ArgumentParser()
parser.add_argument("--bs", dest="batch_size", type=int, default=16)
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()

torch.manual_seed(0)
train_loader = get_dataloader(make_dataset(256), args.batch_size)
val_loader = DataLoader(make_dataset(64), batch_size=32)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)


def train_iter(net, x, y):
    loss = F.cross_entropy(net(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


for epoch in range(args.epochs):
    for i, (x, y) in enumerate(train_loader):
        train_iter(model, x, y)
        if i % 4 == 3:
            with torch.no_grad():
                for vx, vy in val_loader:
                    model(vx)
