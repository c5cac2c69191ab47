"""Fine-tune a small network whose backbone is loaded from a checkpoint file.

Nothing can be downloaded here, so the checkpoint stands in for a published one: the first
run writes it (a seeded backbone, saved with ``torch.save``; no training happens before
the fine-tuning loop, so a profiler sees the load first). Then the script builds the model,
loads the backbone with ``model.backbone.load_state_dict(torch.load(path))``, puts a new
4-class head on it and fine-tunes with Adam.

Run it:      python examples/finetune.py --steps 300
Profile it:  ccprof analyze examples/finetune.py -- --steps 300
"""
import argparse
import os
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_backbone(in_dim, hidden):
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(),
        nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(),
        nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(),
    )


class Classifier(nn.Module):
    def __init__(self, in_dim, hidden, num_classes):
        super().__init__()
        self.backbone = make_backbone(in_dim, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):                                        # (B, in_dim)
        return self.head(self.backbone(x))                       # (B, classes)


def make_task(num_classes, in_dim, seed):
    """Classes are Gaussian blobs around random centres; returns a batch sampler."""
    centres = torch.randn(num_classes, in_dim, generator=torch.Generator().manual_seed(seed))

    def sample(batch_size):
        y = torch.randint(0, num_classes, (batch_size,))
        x = centres[y] + 0.8 * torch.randn(batch_size, in_dim)
        return x, y

    return sample


def write_checkpoint(path, in_dim, hidden, seed=0):
    torch.manual_seed(seed)
    torch.save(make_backbone(in_dim, hidden).state_dict(), path)
    print(f"backbone checkpoint written to {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=os.path.join(tempfile.gettempdir(), "ccprof_example_backbone.pt"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--in-dim", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not os.path.exists(args.checkpoint):
        write_checkpoint(args.checkpoint, args.in_dim, args.hidden)

    torch.manual_seed(args.seed)

    model = Classifier(args.in_dim, args.hidden, num_classes=4)
    model.backbone.load_state_dict(torch.load(args.checkpoint))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    sample = make_task(4, args.in_dim, seed=1)

    for step in range(args.steps):
        x, y = sample(args.batch_size)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
