"""dataloader: worker processes, pinned memory and persistent workers on the user's DataLoaders.

A DataLoader reads these settings when an iterator is created, so a change made while an
epoch is iterating takes effect at the next ``iter(loader)``; ``dataloader_hooks`` returns a
callback the harness calls from ``DataLoader.__iter__`` so a verify run gets the settings
from its first epoch. ``persistent_workers`` is guarded by DataLoader.__setattr__ after
construction and is set past that guard (it is only read when an iterator is made).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, IterableDataset

from ccprof.applier.runtime._base import Applied, RunObjects, model_device, not_applied, register
from ccprof.artefacts.tweaks import DataloaderOptions

__all__ = ["apply_dataloader", "dataloader_settings", "loader_hook"]

TWEAK = "dataloader"
_D = DataloaderOptions()                # the catalog's one default of each option
LOADER_MARK = "_ccprof_dataloader"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def dataloader_settings(model: Any = None, num_workers: int | None = None, pin_memory: bool | None = None,
                        persistent_workers: bool | None = None, prefetch_factor: int | None = None) -> dict[str, Any]:
    """The settings to apply: the options (the catalog's defaults: 4 workers, pinned memory,
    persistent workers when there are workers), within what this machine can do: at most its
    CPUs - 1 workers, and pinned memory only when the run trains on CUDA."""
    defaults = _D
    if num_workers is None:
        num_workers = defaults.value("num_workers")
    num_workers = max(0, min(num_workers, _cpus() - 1))
    if pin_memory is None:
        pin_memory = defaults.value("pin_memory")
    on_cuda = model_device(model).type == "cuda" if model is not None else torch.cuda.is_available()
    pin_memory = bool(pin_memory and on_cuda)
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    if num_workers > 0 and prefetch_factor is None:
        prefetch_factor = 2  # DataLoader's own default with workers
    if num_workers == 0:
        prefetch_factor, persistent_workers = None, False
    return {"num_workers": num_workers, "pin_memory": pin_memory,
            "persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor}


def _configure(loader: DataLoader, want: dict[str, Any]) -> tuple[list[str], str | None]:
    """Apply ``want`` to one loader; returns (changes, why not)."""
    if getattr(loader, LOADER_MARK, None) == want:
        return [], "already configured by ccprof"
    if isinstance(loader.dataset, IterableDataset) and want["num_workers"] > 0 and loader.num_workers == 0:
        return [], (f"{type(loader.dataset).__name__} is an IterableDataset: each worker would replay "
                    "the whole stream unless it shards by get_worker_info(); set num_workers yourself")
    if loader.num_workers > want["num_workers"]:   # never take workers away
        want = {**want, "num_workers": loader.num_workers, "persistent_workers": True,
                "prefetch_factor": loader.prefetch_factor or 2}
    changes = []
    for k, v in want.items():
        cur = getattr(loader, k)
        if cur != v:
            object.__setattr__(loader, k, v)   # DataLoader guards persistent_workers after __init__
            changes.append(f"{k} {cur} -> {v}")
    object.__setattr__(loader, LOADER_MARK, want)
    if not changes:
        return [], "settings already as wanted"
    return changes, None


def loader_hook(want: dict[str, Any]) -> Callable[[DataLoader], list[str]]:
    """A callback for ``DataLoader.__iter__``: applies ``want`` to each loader once; returns what
    it changed."""
    def on_dataloader_iter(loader: DataLoader) -> list[str]:
        return _configure(loader, want)[0]
    return on_dataloader_iter


def dataloader_hook(**options: Any) -> Callable[[DataLoader], list[str]]:
    """The harness's ``DataLoader.__iter__`` callback for this tweak's options (see
    ``ccprof.applier.runtime.dataloader_hooks``)."""
    return loader_hook(dataloader_settings(None, **options))


@register(TWEAK)
def apply_dataloader(objs: RunObjects, num_workers: int | None = _D.value("num_workers"),
                     pin_memory: bool | None = _D.value("pin_memory"),
                     persistent_workers: bool | None = None, prefetch_factor: int | None = None) -> Applied:
    """Set workers / pinned memory / persistent workers on each of ``objs.dataloaders``.

    Output: Applied; takes effect at each loader's next ``iter()`` (next epoch), or from the
    start when the harness installs ``dataloader_hooks("dataloader", options)``.
    Example: ``apply_dataloader(RunObjects(model, dataloaders=[loader]), num_workers=2)``.
    """
    if not objs.dataloaders:
        return not_applied(TWEAK, "no torch DataLoader was seen in this run")
    want = dataloader_settings(objs.model, num_workers, pin_memory, persistent_workers, prefetch_factor)
    changes, why = [], []
    for i, loader in enumerate(objs.dataloaders):
        c, w = _configure(loader, want)
        changes += [f"DataLoader #{i}: {x}" for x in c]
        if w:
            why.append(f"DataLoader #{i}: {w}")
    if not changes:
        already = all("already" in w for w in why)
        return not_applied(TWEAK, "; ".join(why), already=already)
    changes.append("takes effect at the next iter(loader) (the epoch in progress keeps its iterator)")
    return Applied(TWEAK, True, ", ".join(f"{k}={v}" for k, v in want.items()), changes + why,
                   details={"settings": want})
