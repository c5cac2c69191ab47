"""Train a small CNN classifier on synthetic images, fed by a DataLoader with workers.

Each class is a fixed random 3x32x32 pattern; a sample is its class pattern plus noise, so
the network can learn it in a few hundred steps. The model is two conv/bn/relu/pool stages
and a linear head; the optimizer is SGD with momentum. A held-out split is scored every
epoch.

Run it:      python examples/cnn.py --epochs 3
Profile it:  ccprof analyze examples/cnn.py -- --epochs 3 --batch-size 32
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class NoisyPatterns(Dataset):
    """``n`` images of ``num_classes`` random patterns plus Gaussian noise, made on the fly."""

    def __init__(self, n, num_classes=10, image_size=32, noise=1.0, seed=0):
        g = torch.Generator().manual_seed(1234)  # same class patterns for every split
        self.patterns = torch.randn(num_classes, 3, image_size, image_size, generator=g)
        self.labels = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(seed))
        self.noise = noise
        self.seed = seed

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        label = self.labels[i]
        image = self.patterns[label] + self.noise * torch.randn(self.patterns.shape[1:], generator=g)
        return image, label


class SmallCNN(nn.Module):
    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width * 8 * 8, num_classes)

    def forward(self, x):                                        # (B, 3, 32, 32)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)     # (B, w, 16, 16)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)     # (B, 2w, 8, 8)
        return self.fc(torch.flatten(x, 1))                      # (B, classes)


def evaluate(model, loader, device):
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            total += len(labels)
    model.train()
    return loss_sum / total, correct / total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=3200)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    train_set = NoisyPatterns(args.train_size, seed=args.seed)
    val_set = NoisyPatterns(256, seed=args.seed + 1)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                              num_workers=args.num_workers, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=128, num_workers=args.num_workers)

    model = SmallCNN().to(args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=5e-4)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(train_loader)} steps per epoch")

    step, t0 = 0, time.time()
    for epoch in range(args.epochs):
        for images, labels in train_loader:
            images, labels = images.to(args.device), labels.to(args.device)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % args.log_every == 0:
                print(f"epoch {epoch} step {step}: loss {loss.item():.4f} ({time.time() - t0:.1f}s)")
            step += 1
            if args.steps is not None and step >= args.steps:
                break
        val_loss, val_acc = evaluate(model, val_loader, args.device)
        print(f"epoch {epoch}: val loss {val_loss:.4f}, val accuracy {val_acc:.1%}")
        if args.steps is not None and step >= args.steps:
            break

    print(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
