# Tests: the loop shapes real scripts use to say how long they run; --style picks one.
#   range      for it in range(args.max_iters)                        -> 300 steps (argparse)
#   while      while True: ... if it >= cfg.max_iters: break (minGPT) -> 250 steps
#   epochs     for epoch in range(args.epochs): for xb, yb in loader  -> 3 epochs x 16 batches
#   infinite   a sampler that draws forever, --max-steps 120            -> 120, never its "epoch"
#   named      a loop with no visible bound; config.total_steps=900     -> 900 (limit-named setting)
#   nested     for epoch in range(n_ep): train(loader), as pytorch/examples do -> 2 epochs x 16
#   onepass    one for loop over a finite loader, nothing around it       -> 16 (one epoch)
#   gan        for epoch in range(5000): for d in range(20)               -> 100,000 (they multiply)
#   resume     llama2.c resumed at iter 100, if iter_num > 1000: break    -> 901 left
#   modulo     64 micro-batches, opt.step() under if (i + 1) % 4 == 0     -> 16
#   none       while True with a wall-clock stop                        -> unknown
#   peek       for epoch in range(args.epochs): next(iter(loader)), one batch an epoch -> 4 steps
#   onebatch   for epoch in range(args.epochs): for xb, yb in loader: ...; break       -> 4 steps
#   evallast   for it in range(max_iters + 1), the last iteration only evaluates      -> 50 steps
#   stopat     for it in range(1000): step; if it == stop_at: break (after the step) -> stop_at + 1
import argparse
import time
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

p = argparse.ArgumentParser()
p.add_argument("--style", default="range")
style = p.parse_known_args()[0].style
# each style declares only the options it uses, as a real script would
if style == "range":
    p.add_argument("--max-iters", type=int, default=300)
if style == "infinite":
    p.add_argument("--max-steps", type=int, default=120)
if style == "epochs":
    p.add_argument("--epochs", type=int, default=3)
if style in ("peek", "onebatch"):
    p.add_argument("--epochs", type=int, default=4)
args = p.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=1e-2)
data = TensorDataset(torch.randn(256, 8), torch.randn(256, 1))


def step(x, y):
    loss = F.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


if args.style == "range":
    for it in range(args.max_iters):
        step(torch.randn(16, 8), torch.randn(16, 1))
elif args.style == "while":
    cfg = SimpleNamespace(max_iters=250, lr=1e-2)
    it = 0
    while True:
        step(torch.randn(16, 8), torch.randn(16, 1))
        it += 1
        if cfg.max_iters is not None and it >= cfg.max_iters:
            break
elif args.style == "epochs":
    loader = DataLoader(data, batch_size=16, shuffle=True)
    for epoch in range(args.epochs):
        for xb, yb in loader:
            step(xb, yb)
elif args.style == "infinite":
    sampler = RandomSampler(data, replacement=True, num_samples=int(1e10))
    loader = DataLoader(data, batch_size=16, sampler=sampler)
    for i, (xb, yb) in enumerate(loader):
        step(xb, yb)
        if i >= args.max_steps:
            break
elif args.style == "named":
    config = SimpleNamespace(total_steps=900, log_every=10)

    def batches():
        while True:
            yield torch.randn(16, 8), torch.randn(16, 1)
    for xb, yb in batches():
        step(xb, yb)
elif args.style == "nested":
    loader = DataLoader(data, batch_size=16, shuffle=True)

    def train(loader):
        for xb, yb in loader:
            step(xb, yb)
    n_ep = 2
    for e in range(n_ep):
        train(loader)
elif args.style == "onepass":
    loader = DataLoader(data, batch_size=16, shuffle=True)
    for xb, yb in loader:
        step(xb, yb)
elif args.style == "gan":
    num_epochs, d_steps = 5000, 20
    for epoch in range(num_epochs):
        for d_index in range(d_steps):
            step(torch.randn(16, 8), torch.randn(16, 1))
elif args.style == "resume":
    max_iters, iter_num = 1000, 100                 # as loaded from a checkpoint
    while True:
        step(torch.randn(16, 8), torch.randn(16, 1))
        iter_num += 1
        if iter_num > max_iters:
            break
elif args.style == "modulo":
    xs = list(torch.randn(64, 16, 8))
    accum = 4
    for i, x in enumerate(xs):
        loss = F.mse_loss(model(x), torch.zeros(16, 1)) / accum
        loss.backward()
        if (i + 1) % accum == 0:
            opt.step()
            opt.zero_grad()
elif args.style == "none":
    t0 = time.monotonic()
    while True:
        step(torch.randn(16, 8), torch.randn(16, 1))
        if time.monotonic() - t0 > 3600:
            break
elif args.style == "peek":
    loader = DataLoader(data, batch_size=16, shuffle=True)
    for epoch in range(args.epochs):
        xb, yb = next(iter(loader))                 # one batch an epoch, not the loader's 16
        step(xb, yb)
elif args.style == "onebatch":
    loader = DataLoader(data, batch_size=16, shuffle=True)
    for epoch in range(args.epochs):
        for xb, yb in loader:
            step(xb, yb)
            break                                   # one batch an epoch
elif args.style == "evallast":
    max_iters, eval_interval = 50, 10

    def evaluate():
        with torch.no_grad():
            return F.mse_loss(model(torch.randn(16, 8)), torch.randn(16, 1))
    for it in range(max_iters + 1):
        if it % eval_interval == 0:
            evaluate()
        if it == max_iters:
            break                                   # the last iteration only evaluates
        step(torch.randn(16, 8), torch.randn(16, 1))
elif args.style == "stopat":
    stop_at = 9
    for it in range(1000):
        step(torch.randn(16, 8), torch.randn(16, 1))
        if it == stop_at:
            break                                   # after the step: iteration 9 trained too
