"""dataloader and batch_size: settings changed on the user's DataLoader objects in place."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from ccprof.applier.runtime import RunObjects, apply_batch_size, apply_dataloader, apply_tweak, dataloader_hooks
from tests.helpers.models import tiny_gpt


class WorkerIds(Dataset):
    """Returns the id of the worker that loaded each item (-1 in the main process)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        info = torch.utils.data.get_worker_info()
        return torch.tensor(-1 if info is None else info.id)


class Stream(IterableDataset):
    def __iter__(self):
        return iter(torch.arange(8))


def test_workers_take_effect_at_next_iter():
    loader = DataLoader(WorkerIds(), batch_size=2)
    model = tiny_gpt(n_layer=1)
    it = iter(loader)
    first = next(it)
    r = apply_dataloader(RunObjects(model, dataloaders=[loader]), num_workers=1, pin_memory=False)
    assert r.applied and loader.num_workers == 1 and loader.persistent_workers and loader.prefetch_factor == 2
    assert (first == -1).all() and (next(it) == -1).all()      # the epoch in progress is unchanged
    assert all((b == 0).all() for b in loader)                 # the next epoch loads in worker 0
    again = apply_dataloader(RunObjects(model, dataloaders=[loader]), num_workers=1)
    assert again.already_applied


def test_dataloader_cannot_apply():
    r = apply_dataloader(RunObjects(tiny_gpt(n_layer=1)))
    assert not r.applied and "no torch DataLoader" in r.reason
    r = apply_dataloader(RunObjects(tiny_gpt(n_layer=1), dataloaders=[DataLoader(Stream(), batch_size=2)]),
                         num_workers=2)
    assert not r.applied and "IterableDataset" in r.reason
    busy = DataLoader(WorkerIds(), num_workers=2, pin_memory=False, persistent_workers=True)
    r = apply_dataloader(RunObjects(tiny_gpt(n_layer=1), dataloaders=[busy]), num_workers=1, pin_memory=False)
    assert not r.applied and r.already_applied and busy.num_workers == 2     # never fewer workers


def test_dataloader_hook_for_the_harness():
    hook = dataloader_hooks("dataloader", {"num_workers": 1, "pin_memory": False})
    loader = DataLoader(WorkerIds(), batch_size=4)
    hook(loader)
    hook(loader)                                               # once per loader
    assert loader.num_workers == 1 and all((b == 0).all() for b in loader)
    assert dataloader_hooks("lora") is None


def test_batch_size_changes_from_the_next_batch():
    data = TensorDataset(torch.arange(40))
    loader = DataLoader(data, batch_size=4)
    model = tiny_gpt(n_layer=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    it = iter(loader)
    assert len(next(it)[0]) == 4
    r = apply_tweak("batch_size", RunObjects(model, [opt], [loader]), {"factor": 2, "scale_lr": True})
    assert r.applied and r.details["sizes"] == [(4, 8)]
    assert len(next(it)[0]) == 8 and loader.batch_size == 8 and len(loader) == 5   # 40 / 8
    assert opt.param_groups[0]["lr"] == 0.2                 # linear scaling rule, asked for
    again = apply_batch_size(RunObjects(model, [opt], [loader]), batch_size=16)
    assert again.already_applied and loader.batch_size == 8


def test_batch_size_hook_and_cannot_apply():
    loader = DataLoader(TensorDataset(torch.arange(12)), batch_size=3)
    dataloader_hooks("batch_size", {"batch_size": 6})(loader)
    assert [len(b[0]) for b in loader] == [6, 6]
    custom = DataLoader(TensorDataset(torch.arange(12)), batch_size=None)
    r = apply_batch_size(RunObjects(tiny_gpt(n_layer=1), dataloaders=[custom]), batch_size=4)
    assert not r.applied and "no automatic batching" in r.reason
    r = apply_batch_size(RunObjects(tiny_gpt(n_layer=1)))
    assert not r.applied and "no torch DataLoader" in r.reason
