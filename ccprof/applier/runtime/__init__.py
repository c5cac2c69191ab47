"""Runtime appliers: apply one tweak to the live objects of a running, unmodified script.

The harness calls ``apply_tweak(tweak, RunObjects(model=root, optimizers=[...],
dataloaders=[...]), options)`` at the first forward of the trained root module. Every
change is made in place (the user's variables keep pointing at the same model, optimizer
and DataLoader objects); a marker on the model makes a second application a no-op that
says so; a tweak that does not fit the run returns ``applied=False`` with the reason.

Changes to the root module's own ``forward`` (mixed_precision, compile, grad_accumulation,
distillation) take effect from the next forward call: ``Module._call_impl`` reads
``forward`` before it runs the pre-hook the harness is calling from. Changes inside the
model (checkpointing, lora, warm_start, pruning, quantization, the student's blocks) apply
to the call in progress. ``dataloader_hooks`` gives the harness a ``DataLoader.__iter__``
callback so loader settings hold from the first epoch.

Example::

    from ccprof.applier.runtime import apply_tweak, RunObjects
    r = apply_tweak("lora", RunObjects(model, [optimizer]), {"r": 8})
    r.applied, r.reason, r.changes
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from ccprof.artefacts.tweaks import TWEAKS, TweakOptions, options_for, runtime_ids

from ._base import REGISTRY, STATE_ATTR, Applied, RunObjects
from .quality import LOSS_TOLERANCE_FRAC, quality_guard

__all__ = [
    "RunObjects", "Applied", "apply_tweak", "runtime_tweaks", "run_options", "NOT_RUNTIME", "dataloader_hooks",
    "runtime_notes", "quality_guard", "LOSS_TOLERANCE_FRAC", "runtime_module",
]

# Catalog tweaks that cannot be applied to live objects mid-run, and what to do instead (the
# catalog says, ccprof/artefacts/tweaks.py)
NOT_RUNTIME: dict[str, str] = {t: i.no_runtime for t, i in TWEAKS.items() if not i.runtime}


def runtime_module(tweak: str):
    """The runtime module of a catalog id, ``ccprof.tweaks.<id>.runtime`` (all are imported with this package)."""
    if tweak not in TWEAKS or not TWEAKS[tweak].runtime:
        raise KeyError(f"{tweak!r} has no runtime applier")
    return importlib.import_module(f"ccprof.tweaks.{tweak}.runtime")


for _tweak in runtime_ids():
    runtime_module(_tweak)                  # each registers ``apply_<id>`` into REGISTRY


def __getattr__(name: str):
    """``apply_<id>`` for every runtime id, from the registry (``from ccprof.applier.runtime import apply_lora``)."""
    if name.startswith("apply_") and name[len("apply_"):] in REGISTRY:
        return REGISTRY[name[len("apply_"):]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def runtime_tweaks() -> list[str]:
    """Tweak ids with a runtime applier, in catalog order."""
    return [t for t in TWEAKS if t in REGISTRY]


def _kwargs(options: TweakOptions | dict[str, Any] | None) -> dict[str, Any]:
    """An applier's keyword arguments: from typed options, or as given."""
    return options.runtime_kwargs() if isinstance(options, TweakOptions) else dict(options or {})


def run_options(tweak: str, fields: dict[str, Any] | None) -> TweakOptions:
    """The typed options of ``tweak`` from a run spec's JSON (its fields, as advice.json holds them)."""
    return options_for(tweak, fields, f"tweak_options.{tweak}")


def apply_tweak(tweak: str, objs: RunObjects | nn.Module,
                options: TweakOptions | dict[str, Any] | None = None) -> Applied:
    """Apply one catalog tweak to the live objects; never raises for a tweak that does not fit.

    Inputs: ``tweak`` a catalog id; ``objs`` the live objects (a bare module is taken as
    ``RunObjects(model=module)``); ``options`` the tweak's typed options (what advice.json
    projected: ``GradAccumulationOptions(steps=4)``), or keyword options of ``apply_<tweak>``.
    Output: Applied(tweak, applied, reason, changes, already_applied, details).
    An unexpected error inside an applier is reported as not applied, with its type and
    message (changes made before it may remain; the verify run should then be discarded).
    Example: ``apply_tweak("checkpointing", RunObjects(model, [opt]))``.
    """
    if tweak not in TWEAKS:
        return Applied(tweak, False, f"unknown tweak {tweak!r}; `ccprof tweaks` lists them")
    options = _kwargs(options)
    if tweak in NOT_RUNTIME:
        return Applied(tweak, False, f"{tweak} cannot be applied to a running script: {NOT_RUNTIME[tweak]}")
    fn = REGISTRY[tweak]
    try:
        return fn(objs, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            return Applied(tweak, False, f"bad option for {tweak}: {e}")
        return Applied(tweak, False, f"{tweak} failed: {type(e).__name__}: {e}", details={"error": type(e).__name__})
    except Exception as e:  # a run must survive one tweak's failure; the reason is reported
        return Applied(tweak, False, f"{tweak} failed: {type(e).__name__}: {e}", details={"error": type(e).__name__})


def dataloader_hooks(tweak: str, options: TweakOptions | dict[str, Any] | None = None) -> Callable[[Any], list[str]] | None:
    """A ``on_dataloader_iter(loader)`` callback for ``DataLoader.__iter__``, or None.

    For a tweak whose runtime module defines ``dataloader_hook(**options)`` (today batch_size and
    dataloader): the callback applies the settings to each
    loader once, before its iterator is made, so a verify run has them from epoch one; it
    returns what it changed (the harness then counts the tweak as applied).
    Example: ``hook = dataloader_hooks("batch_size", {"batch_size": 64}); hook(loader)``.
    """
    if tweak not in TWEAKS or not TWEAKS[tweak].runtime:
        return None
    make = getattr(runtime_module(tweak), "dataloader_hook", None)
    return make(**_kwargs(options)) if make else None


def runtime_notes(model: nn.Module) -> dict[str, list[str]]:
    """What happened after apply time, by tweak (compile fell back to eager, fp16 skipped steps,
    grad_accumulation found no loss, ...). Empty when nothing did."""
    st = model.__dict__.get(STATE_ATTR) or {}
    return {k: list(v) for k, v in st.get("_notes", {}).items()}
