"""Written for tests/e2e/test_batch_data.py: the data a larger batch cannot follow.

--style fixed:   every step trains on one batch made once from 6 hard-coded sentences
                 (graykode's nlp-tutorial: `input_batch = make_batch()` before the loop);
--style tensor:  full-batch training on one `torch.randn(N, D)` tensor built once (the PyTorch
                 tutorial's dynamic_net);
--style corpus:  a token corpus reshaped to [batch, -1] and walked in slices of seq_len inside an
                 epoch loop (yunjey's language model): 3 steps of 4 rows per epoch;
--style iters:   the same epoch loop, but its inner loop is a count of random batches
                 (`for it in range(3)`): no finite epoch;
--style fresh:   a new random batch every step (the control);
--style moments: a discriminator fed one 1-D vector of 4 moments per step (a 1-D GAN).
"""
import argparse

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--style", default="fixed")
args = parser.parse_args()
torch.manual_seed(0)

sentences = ["i love you", "he loves me", "she likes baseball", "i hate you", "sorry for that", "this is awful"]
vocab = sorted({w for s in sentences for w in s.split()})


def make_batch():
    return torch.tensor([[vocab.index(w) for w in s.split()] for s in sentences])


class Net(nn.Module):
    def __init__(self, n_in=16):
        super().__init__()
        self.emb = nn.Embedding(len(vocab), 16)
        self.fc = nn.Linear(n_in, 2)

    def forward(self, x):
        if x.dtype == torch.long:
            return self.fc(self.emb(x).mean(1))
        return self.fc(x)


if args.style == "moments":
    model = Net(n_in=4)
elif args.style == "tensor":
    model = Net(n_in=32)
else:
    model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.01)

if args.style == "corpus":
    batch_size, seq_len = 4, 5
    ids = torch.randint(0, len(vocab), (4 * 16,))
    ids = ids[: (ids.numel() // batch_size) * batch_size].view(batch_size, -1)      # [4, 16]
    for epoch in range(50):
        for i in range(0, ids.size(1) - seq_len, seq_len):                       # 0, 5, 10: 3 steps
            x = ids[:, i:i + seq_len]
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
elif args.style == "iters":
    for epoch in range(50):
        for it in range(3):
            x = torch.randint(0, len(vocab), (4, 5))
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
else:
    inputs = make_batch()
    x_full = torch.randn(64, 32)
    for step in range(200):
        if args.style == "fixed":
            x = inputs
        elif args.style == "tensor":
            x = x_full
        elif args.style == "moments":
            data = torch.randn(500)
            x = torch.stack([data.mean(), data.std(), data.min(), data.max()])
        else:
            x = torch.randint(0, len(vocab), (6, 3))
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
