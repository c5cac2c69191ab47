"""batch_size: raise the batch size of the user's DataLoaders in place, under the advice's contract.

A DataLoader batches through its ``BatchSampler``, whose ``batch_size`` is read again for
every batch (torch.utils.data.BatchSampler.__iter__ without drop_last), so setting it takes
effect from the next batch in a single-process loader; with workers (or drop_last) from the
next ``iter(loader)``. ``lr_rule`` scales every optimizer group's learning rate (and given
schedulers' base lrs) by the contract's rule (``contract.lr_factor``: x k linear, x sqrt(k)
square root, kept for none; by default the optimizer's own rule, ``contract.lr_rule_for``).
A re-run of a few steps keeps its own step count, so ``keep`` (the run's length) is not applied here.
"""
from __future__ import annotations

from typing import Callable

from torch.utils.data import BatchSampler, DataLoader

from ccprof.applier.runtime._base import Applied, RunObjects, not_applied, register
from ccprof.tweaks.batch_size.contract import lr_factor, lr_rule_for

__all__ = ["apply_batch_size", "loader_hook"]

TWEAK = "batch_size"
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
                    lr_rule: str | None = None, scale_lr: bool | None = None) -> Callable[[DataLoader], list[str]]:
    """The harness's ``DataLoader.__iter__`` callback for this tweak's options (see
    ``ccprof.applier.runtime.dataloader_hooks``): the batch only. The learning rate needs the
    optimizers, which only ``apply_batch_size`` is given; a ``--verify`` re-run counts the hook's
    change as the tweak applied, so there the learning rate stays (its steps measure time and
    memory, which the learning rate does not change)."""
    return loader_hook(batch_size, factor)


@register(TWEAK)
def apply_batch_size(objs: RunObjects, batch_size: int | None = None, factor: float | None = None,
                     lr_rule: str | None = None, scale_lr: bool | None = None) -> Applied:
    """Set the batch size of each of ``objs.dataloaders`` to ``batch_size`` (or x ``factor``, default 2),
    and scale the learning rate by ``lr_rule``.

    Inputs: ``lr_rule`` "linear" (x k), "sqrt" (x sqrt(k)) or "none"; None: each optimizer's own
    rule (``contract.lr_rule_for``: linear for SGD, sqrt for Adam-type, else none), the one the
    advisor states. ``scale_lr=True`` (older option files) means "linear". Every optimizer group's lr
    and the given schedulers' base lrs are multiplied. Output: Applied with (old, new) per loader
    in ``details``. Example: ``apply_batch_size(RunObjects(model, [opt], [loader]), batch_size=64)``.
    """
    if not objs.dataloaders:
        return not_applied(TWEAK, "no torch DataLoader was seen in this run; change the batch size "
                           "where your script builds its batches")
    if lr_rule is None and scale_lr is not None:
        lr_rule = "linear" if scale_lr else "none"
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
    k = sizes[0][1] / sizes[0][0]
    for opt in objs.optimizers:
        rule = lr_rule or lr_rule_for(type(opt).__name__)
        m = lr_factor(rule, k)
        if m == 1.0:
            continue
        for g in opt.param_groups:
            g["lr"] = g["lr"] * m
        changes.append(f"{type(opt).__name__}: lr x {m:.4g} ({rule} rule)")
        for s in objs.schedulers:
            if hasattr(s, "base_lrs") and getattr(s, "optimizer", None) is opt:
                s.base_lrs = [lr * m for lr in s.base_lrs]
    return Applied(TWEAK, True, ", ".join(f"{a} -> {b}" for a, b in sizes), changes + why,
                   details={"sizes": sizes})
