"""Helpers of the sites/ test project (tests/profiler/test_sites.py): the loader is built here,
in another module than the script."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def make_dataset(n, features=8, classes=4):
    return TensorDataset(torch.randn(n, features), torch.randint(0, classes, (n,)))


def get_dataloader(ds, batch_size, workers=0):
    return DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=True)
