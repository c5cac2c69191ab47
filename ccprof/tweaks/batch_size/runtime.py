"""batch_size: raise the batch size of the user's DataLoaders in place.

A DataLoader batches through its ``BatchSampler``, whose ``batch_size`` is read again for
every batch (torch.utils.data.BatchSampler.__iter__ without drop_last), so setting it takes
effect from the next batch in a single-process loader; with workers (or drop_last) from the
next ``iter(loader)``. ``scale_lr`` applies the linear scaling rule (Goyal et al. 2017,
arXiv 1706.02677: lr x k for batch x k); it is off by default because the advisor's
projection keeps the recipe and only fills memory.
"""
from __future__ import annotations

from typing import Callable

from torch.utils.data import BatchSampler, DataLoader

from ccprof.applier.runtime._base import Applied, RunObjects, not_applied, register
from ccprof.artefacts.tweaks import BatchSizeOptions

__all__ = ["apply_batch_size", "loader_hook"]

TWEAK = "batch_size"
_D = BatchSizeOptions()                         # the catalog's one default of each option
LOADER_MARK = "_ccprof_batch_size"


def _target(bs: int, batch_size: int | None, factor: float | None) -> int:
    if batch_size is not None:
        return int(batch_size)
    return max(1, int(round(bs * (factor if factor is not None else 2.0))))


def _resize(loader: DataLoader, batch_size: int | None, factor: float | None) -> tuple[int, int] | str:
    """Resize one loader; returns (old, new) or why not."""
    if getattr(loader, LOADER_MARK, None) is not None:
        return "already resized by ccprof"
    bs_sampler = loader.batch_sampler
    if loader.batch_size is None or not isinstance(bs_sampler, BatchSampler):
        return ("it has no automatic batching (batch_size=None or a custom batch_sampler); "
                "change the batch size where your script builds the batches")
    old = bs_sampler.batch_size
    new = _target(old, batch_size, factor)
    if new == old:
        return f"batch size is already {old}"
    bs_sampler.batch_size = new
    object.__setattr__(loader, "batch_size", new)   # DataLoader guards it after __init__; keep it truthful
    object.__setattr__(loader, LOADER_MARK, (old, new))
    return old, new


def loader_hook(batch_size: int | None = None, factor: float | None = None) -> Callable[[DataLoader], list[str]]:
    """A callback for ``DataLoader.__iter__``: resizes each loader once; returns what it changed."""
    def on_dataloader_iter(loader: DataLoader) -> list[str]:
        r = _resize(loader, batch_size, factor)
        return [f"batch size {r[0]} -> {r[1]}"] if isinstance(r, tuple) else []
    return on_dataloader_iter


def dataloader_hook(batch_size: int | None = None, factor: float | None = None,
                    scale_lr: bool | None = None) -> Callable[[DataLoader], list[str]]:
    """The harness's ``DataLoader.__iter__`` callback for this tweak's options (see
    ``ccprof.applier.runtime.dataloader_hooks``); ``scale_lr`` is applied with the optimizer."""
    return loader_hook(batch_size, factor)


@register(TWEAK)
def apply_batch_size(objs: RunObjects, batch_size: int | None = None, factor: float | None = None,
                     scale_lr: bool = _D.value("scale_lr")) -> Applied:
    """Set the batch size of each of ``objs.dataloaders`` to ``batch_size`` (or x ``factor``, default 2).

    Inputs: ``scale_lr`` multiplies every optimizer group's lr (and given schedulers'
    base lrs) by new/old. Output: Applied with (old, new) per loader in ``details``.
    Example: ``apply_batch_size(RunObjects(model, [opt], [loader]), batch_size=64)``.
    """
    if not objs.dataloaders:
        return not_applied(TWEAK, "no torch DataLoader was seen in this run; change the batch size "
                           "where your script builds its batches")
    changes, why, sizes = [], [], []
    for i, loader in enumerate(objs.dataloaders):
        r = _resize(loader, batch_size, factor)
        if isinstance(r, str):
            why.append(f"DataLoader #{i}: {r}")
        else:
            sizes.append(r)
            changes.append(f"DataLoader #{i}: batch_size {r[0]} -> {r[1]} (from the next batch "
                           f"{'iterator' if loader.num_workers or loader.drop_last else 'batch'})")
    if not sizes:
        return not_applied(TWEAK, "; ".join(why), already=all("already" in w for w in why))
    if scale_lr:
        k = sizes[0][1] / sizes[0][0]
        for opt in objs.optimizers:
            for g in opt.param_groups:
                g["lr"] = g["lr"] * k
            changes.append(f"{type(opt).__name__}: lr x {k:g} (linear scaling rule)")
        for s in objs.schedulers:
            if hasattr(s, "base_lrs"):
                s.base_lrs = [lr * k for lr in s.base_lrs]
    return Applied(TWEAK, True, ", ".join(f"{a} -> {b}" for a, b in sizes), changes + why,
                   details={"sizes": sizes})
