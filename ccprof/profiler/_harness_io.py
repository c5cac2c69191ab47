"""What the harness does besides running the script: the progress file the parent tails, the
plugins the run spec names (the runtime applier, the dataset scanner) and the run objects they
need, the script's static facts, and the process plumbing (dying with the parent, the stop
reason, a deleted cwd, flushing).
"""
from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from ccprof.artefacts.profile import StaticFacts
from ccprof.profiler.hooks import Session
from ccprof.profiler.spec import RunSpec


def _static(script: str, args: list[str]) -> StaticFacts:
    """The script's static facts for this run: ``args`` tell which flag-guarded blocks ran."""
    try:
        from ccprof.profiler.static import (
            read_static_facts,  # here: nothing extra is imported into the user's process before it is needed
        )
    except ImportError:
        return StaticFacts(parsed=False, note="static analysis unavailable")
    try:
        return read_static_facts(script, argv=args)
    except Exception as exc:  # static facts are a bonus; never fail the run for them
        return StaticFacts(parsed=False, note=f"static analysis failed: {exc!r}")


class _Progress:
    """JSON lines appended to a file the parent tails (a file, not a pipe: it crosses torchrun)."""

    def __init__(self, path: str | None):
        self.fh = open(path, "a", buffering=1) if path else None

    def __call__(self, **event: Any) -> None:
        if self.fh is None:
            return
        try:
            self.fh.write(json.dumps(event) + "\n")
        except (OSError, ValueError):
            self.fh = None


def _find_optimizers(model: torch.nn.Module) -> list[torch.optim.Optimizer]:
    """The user's optimizers over ``model``, before any of them has stepped (for --verify)."""
    ids = {id(p) for p in model.parameters()}
    found = []
    with warnings.catch_warnings():
        # isinstance() on every object touches deprecated module attributes (torch.distributed)
        warnings.simplefilter("ignore")
        opts = []
        for o in gc.get_objects():
            try:
                if isinstance(o, torch.optim.Optimizer):
                    opts.append(o)
            except Exception:
                continue
    for obj in opts:
        try:
            if isinstance(obj, torch.optim.Optimizer) and not isinstance(
                    getattr(obj, "optimizer", None), torch.optim.Optimizer):
                if any(id(p) in ids for g in obj.param_groups for p in g["params"]):
                    found.append(obj)
        except Exception:
            continue
    return found


def _find_schedulers(optimizers: list[torch.optim.Optimizer]) -> list[Any]:
    """The LR schedulers built over ``optimizers`` (or a wrapper of one): lora adds a param
    group, and a scheduler that does not know it fails at its next step (HF Trainer's LambdaLR)."""
    ids = {id(o) for o in optimizers}
    found = []
    with warnings.catch_warnings():     # isinstance on deprecated module objects warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if isinstance(obj, (LRScheduler, ReduceLROnPlateau)):
                    o = getattr(obj, "optimizer", None)
                    if id(o) in ids or id(getattr(o, "optimizer", None)) in ids:
                        found.append(obj)
            except Exception:
                continue
    return found


def _scan_data(profile: Any, session: Session, progress: "_Progress", spec_plugins: dict[str, str]) -> Any:
    """--scan-data: fingerprint the whole map-style dataset behind the first DataLoader."""
    dataset = session.dataset
    if dataset is None or not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        why = ("no DataLoader was seen" if not session.loaders
               else "the DataLoader's dataset is not map-style (no len/getitem)")
        return replace(profile, reasons={**profile.reasons, "scan": f"--scan-data: {why}"})
    try:
        scan_dataset = _plugin(spec_plugins, "scan")
        result = scan_dataset(dataset, progress=lambda done, total: progress(event="scan", done=done, total=total)
                              if done % 64 == 0 or done == total else None)
    except Exception as exc:
        return replace(profile, reasons={**profile.reasons, "scan": f"--scan-data failed: {exc!r}"})
    data = replace(profile.data, scan=result, duplicate_frac=result.get("duplicate_frac"),
                   near_duplicate_frac=result.get("near_duplicate_frac"), duplicate_scope="dataset")
    return replace(profile, data=data)


def _plugin(plugins: dict[str, str], name: str) -> Any:
    """The module (or ``module:attribute``) the run spec names for ``name``."""
    target = plugins.get(name)
    if not target:
        raise RuntimeError(f"the run spec names no {name!r} plugin (ccprof.api passes RUN_PLUGINS)")
    mod_name, _, attr = target.partition(":")
    mod = importlib.import_module(mod_name)
    return getattr(mod, attr) if attr else mod


def _stop_reason(spec: RunSpec) -> str:
    """Why the parent sent SIGTERM: "timeout" (--timeout) or "terminated" (ccprof itself was
    sent SIGTERM); a SIGTERM from elsewhere, straight to this process, counts as terminated."""
    path = spec.stop_path
    try:
        reason = Path(path).read_text().strip() if path else ""
    except OSError:
        reason = ""
    return reason or "terminated"


def _die_with_parent() -> None:
    """Linux: SIGKILL this process if its parent (ccprof, or torchrun) dies without stopping it
    (kill -9, an OOM kill): the script must not train on as an orphan."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # here: POSIX only

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _cwd_back(cwd: str) -> None:
    """A script that deleted its own cwd leaves relative paths unusable: go back, or to /."""
    try:
        os.getcwd()
    except OSError:
        for where in (cwd, os.path.dirname(os.path.abspath(__file__)), "/"):
            try:
                os.chdir(where)
                return
            except OSError:
                continue


def _flush() -> None:
    for fh in (sys.stdout, sys.stderr):
        try:
            fh.flush()
        except Exception:
            pass
