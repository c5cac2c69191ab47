# Tests (issue 11, misread 2): work between optimizer steps that is not training.
#   --style val       a validation loop under torch.no_grad() every --every iterations
#   --style generate  minGPT's callback: model.eval(); generate() under no_grad every --every
#   --style none      the same training without either (the FLOP step must be identical)
#   --style teacher   a frozen teacher under no_grad every step: training work, not evaluation
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--style", default="val")
p.add_argument("--every", type=int, default=2)
p.add_argument("--iters", type=int, default=40)
args = p.parse_args()

torch.manual_seed(0)
V, T, D = 32, 16, 32


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.body = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))
        self.head = nn.Linear(D, V)

    def forward(self, idx):
        return self.head(self.body(self.emb(idx)))

    @torch.no_grad()
    def generate(self, idx, n):
        for _ in range(n):
            logits = self(idx[:, -T:])[:, -1, :]
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


model = TinyLM()
teacher = TinyLM().requires_grad_(False) if args.style == "teacher" else None
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)


def batch(n=8):
    x = torch.randint(0, V, (n, T))
    return x, torch.roll(x, -1, dims=1)


def validate():
    model.eval()
    with torch.no_grad():
        losses = [F.cross_entropy(model(x).view(-1, V), y.view(-1)).item() for x, y in (batch(16) for _ in range(3))]
    model.train()
    return sum(losses) / len(losses)


for it in range(args.iters):
    if args.style == "val" and it % args.every == 0:
        print(f"iter {it}: val {validate():.3f}")
    x, y = batch()
    logits = model(x)
    loss = F.cross_entropy(logits.view(-1, V), y.view(-1))
    if teacher is not None:
        with torch.no_grad():
            t = teacher(x)
        loss = loss + F.kl_div(F.log_softmax(logits, -1), F.softmax(t, -1), reduction="batchmean")
    opt.zero_grad()
    loss.backward()
    opt.step()
    if args.style == "generate" and it % args.every == 0:
        model.eval()
        out = model.generate(torch.zeros(1, 1, dtype=torch.long), 20)
        model.train()
        print(f"iter {it}: sample {out[0, :8].tolist()}")
