# Tests: a small CNN whose Dataset spends 100 ms making each batch (a slow decode or
# augmentation), loaded with num_workers=0: on a GPU the step would wait for data, not compute.
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

BATCH = 16


class SlowImages(Dataset):
    def __len__(self):
        return 64 * BATCH

    def __getitem__(self, i):
        time.sleep(0.1 / BATCH)                  # 100 ms per batch of 16
        g = torch.Generator().manual_seed(i)
        return torch.randn(3, 32, 32, generator=g), i % 10


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(SlowImages(), batch_size=BATCH, shuffle=True, num_workers=0)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
