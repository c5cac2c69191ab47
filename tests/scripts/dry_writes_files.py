"""A loop that writes files the way training scripts do: a log appended every step, a checkpoint
opened with open(path, "wb") and torch.save'd into (pytorch/examples' word_language_model), a
metrics file it makes. A --dry-run must leave the files that were there as they were."""
import argparse
import json

import torch
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--save", default="model.pt")
parser.add_argument("--log", default="train.log")
args = parser.parse_args()

model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
log = open(args.log, "a")
for step in range(100):
    x, y = torch.randn(16, 32), torch.randint(0, 8, (16,))
    loss = F.cross_entropy(model(x), y)
    log.write(f"step {step} loss {loss.item():.4f}\n")
    log.flush()
    with open(args.save, "wb") as f:
        torch.save(model, f)
    with open("metrics.json", "w") as f:
        json.dump({"step": step}, f)
    loss.backward()
    opt.step()
    opt.zero_grad()
