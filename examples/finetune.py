"""Fine-tune a small pretrained network loaded from a checkpoint file.

Step 1 (only when the checkpoint file does not exist yet): pretrain an MLP backbone on a
10-class synthetic task and save its weights with ``torch.save``. Step 2: build a fresh
model, load the backbone with ``model.backbone.load_state_dict(torch.load(path))``, put a
new head on it and fine-tune on a different 4-class task with Adam.

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


def pretrain(path, in_dim, hidden, steps):
    model = Classifier(in_dim, hidden, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sample = make_task(10, in_dim, seed=0)
    for step in range(steps):
        x, y = sample(64)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.backbone.state_dict(), path)
    print(f"pretrained backbone saved to {path} (final loss {loss.item():.4f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=os.path.join(tempfile.gettempdir(), "ccprof_example_backbone.pt"))
    parser.add_argument("--pretrain-steps", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--in-dim", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    if not os.path.exists(args.checkpoint):
        pretrain(args.checkpoint, args.in_dim, args.hidden, args.pretrain_steps)

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
