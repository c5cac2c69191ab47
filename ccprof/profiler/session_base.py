"""What every part of the profiling Session shares: the phases, the limits, the stop
exceptions and small helpers on tensors, batches and loaders (no state)."""
from __future__ import annotations

import random
import sys
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from ccprof.artefacts.fingerprint import example_input
from ccprof.artefacts.vocab import EVAL_PHASE, STEP_PHASES, dtype_name
from ccprof.profiler.clock import cpu_s, wall_s

PHASES = STEP_PHASES
# Forwards of the trained model under no_grad between optimizer steps (validation,
# generate()) are timed as "eval", outside the step; a pass step they land in is redone.
_TIMED = PHASES + (EVAL_PHASE,)
EVAL_MAX_ROWS = 4000         # op rows kept for the counted evaluation episode
MAX_PASS_RETRIES = 3
MAX_FINGERPRINTS = 4096     # sampled examples kept for duplicate detection
PROBE_BUDGET_S = 1.0         # at most this long fetching samples for the batch-time probe
PROBE_BATCHES = 8            # and at most this many batches
CHECKPOINT_S = 10.0          # during the timed steps, a partial profile at most this often
MAX_SHAPES = 8
PROBE_PARAMS, PROBE_ELEMENTS = 4, 4096   # what is compared to see a hand-written update


class StopProfiling(BaseException):
    """Raised from a hook once the measured steps are done; not an ``Exception`` on purpose."""


class _Timeout(BaseException):
    """Raised in the main thread when the parent asks the run to stop (timeout)."""


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()


def _is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _first_tensor(obj: Any) -> torch.Tensor | None:
    """A batch's (or a call's arguments') input tensor, found as the duplicate fingerprint finds it."""
    return example_input(obj, _is_tensor)


# steps whose model input is hashed (warm-up and pass steps only: hashing costs time), and how
# much of one input: every value up to FULL_HASH_ELEMENTS, else SAMPLED_ELEMENTS spread evenly
MAX_INPUT_STEPS = 16
FULL_HASH_ELEMENTS = 1 << 20
SAMPLED_ELEMENTS = 1 << 16


MAX_INPUT_TENSORS = 8


def input_key(args: Any) -> str | None:
    """A digest of what a forward was fed: each tensor of ``args`` (the call's arguments, up to
    ``MAX_INPUT_TENSORS``) by dtype, shape and values (all of them up to ``FULL_HASH_ELEMENTS``,
    else ``SAMPLED_ELEMENTS`` spread evenly), read with no dispatch mode watching (the FLOP and
    memory passes do not see these reads); None when there is no tensor or its values cannot be
    read (fake tensors under --dry-run).

    Example: ``input_key((x, h)) == input_key((x.clone(), h))``; ``input_key((x,)) != input_key((x + 1,))``.
    """
    import hashlib

    from torch.utils._python_dispatch import _disable_current_modes
    tensors = [x for x in tree_flatten(args)[0] if isinstance(x, torch.Tensor)][:MAX_INPUT_TENSORS]
    if not tensors:
        return None
    h = hashlib.blake2b(digest_size=8)
    try:
        with _disable_current_modes(), torch.no_grad():
            for t in tensors:
                flat = t.detach().reshape(-1)
                n = flat.numel()
                if n > FULL_HASH_ELEMENTS:
                    flat = flat[:: n // SAMPLED_ELEMENTS][:SAMPLED_ELEMENTS]
                h.update(f"{dtype_name(t.dtype)}{tuple(t.shape)}".encode())
                h.update(flat.to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    except Exception:
        return None
    return h.hexdigest()


def _describe_batch(batch: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(batch, torch.Tensor):
        dtype = dtype_name(batch.dtype)
        out.append(f"{prefix or 'batch'}: {dtype}{list(batch.shape)}")
    elif isinstance(batch, dict):
        for k, v in batch.items():
            out += _describe_batch(v, str(k))
    elif isinstance(batch, (list, tuple)):
        for i, v in enumerate(batch):
            out += _describe_batch(v, f"{prefix}[{i}]" if prefix else f"[{i}]")
    return out[:MAX_SHAPES]


def _count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


_MODULE_FILE = nn.modules.module.__file__


def _call_kwargs(module: nn.Module) -> dict:
    """The keyword arguments of ``module``'s call in progress ({} when they cannot be found).

    torch calls a *global* forward pre-hook as ``hook(module, args)``, without the kwargs
    (only per-module hooks can ask for them), so ``model(**batch)`` -- the Hugging Face
    Trainer's call and most HF loops -- looked argument-less at discovery: the first-forward
    tweaks saw no labels and the example input was empty. The kwargs dict is read (never
    written) from torch's ``Module._call_impl`` frame a few levels up.
    """
    frame = sys._getframe(1)
    for _ in range(6):
        if frame is None:
            break
        if frame.f_code.co_filename == _MODULE_FILE:
            local = frame.f_locals
            if local.get("self") is module and isinstance(local.get("kwargs"), dict):
                return local["kwargs"]
        frame = frame.f_back
    return {}


def _distinct_items(draws: int, seen: int, population: int) -> float:
    """Distinct items D in a dataset of ``population`` rows such that ``draws`` uniform draws with
    replacement are expected to see ``seen`` distinct ones: D (1 - (1 - 1/D)^draws) = seen."""
    def expected(d: float) -> float:
        return d * (1.0 - (1.0 - 1.0 / d) ** draws)

    lo, hi = float(max(seen, 1)), float(max(population, seen, 1))
    if expected(hi) <= seen:
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if expected(mid) < seen:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _backward_site(frame: Any) -> tuple:
    """Where a backward was called from: the (file, line) chain of the user's frames on the stack,
    so one accumulation loop is one site and two loss terms (a GAN's D on real and fake) are two."""
    from ccprof.profiler.run_size import (
        _user_frame,  # here: nothing extra is imported into the user's process before it is needed
    )

    chain = []
    while frame is not None and len(chain) < 8:
        if _user_frame(frame):
            chain.append((frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    return tuple(chain)


def _loader_info(loader: Any) -> dict[str, Any]:
    """Batch size, workers, dataset length, steps per epoch, and whether its epochs end."""
    info: dict[str, Any] = {
        "batch_size": loader.batch_size,
        "num_workers": loader.num_workers,
        "pin_memory": bool(loader.pin_memory),
        "persistent_workers": bool(getattr(loader, "persistent_workers", False)),
    }
    try:
        info["dataset_len"] = len(loader.dataset)
    except Exception:
        info["dataset_len"] = None
    try:
        info["steps_per_epoch"] = len(loader)
    except Exception:
        info["steps_per_epoch"] = None
    finite = info["steps_per_epoch"] is not None
    sampler = getattr(loader, "sampler", None)
    info["replacement"] = bool(isinstance(sampler, torch.utils.data.RandomSampler)
                               and getattr(sampler, "replacement", False))
    n = info["dataset_len"]
    if isinstance(sampler, torch.utils.data.RandomSampler) and getattr(sampler, "replacement", False) and n:
        # minGPT's RandomSampler(replacement=True, num_samples=int(1e10)): an endless stream
        if getattr(sampler, "num_samples", 0) > 10 * n:
            finite = False
    if isinstance(getattr(loader, "dataset", None), torch.utils.data.IterableDataset):
        finite = finite and info["steps_per_epoch"] is not None
    if info["steps_per_epoch"] and info["steps_per_epoch"] > 10**8:
        finite = False
    info["finite"] = finite
    return info


def _batch_bytes(batch: Any) -> int:
    """Bytes of every tensor in a batch (what a host-to-device copy moves)."""
    leaves, _ = tree_flatten(batch)
    return int(sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor)))


def probe_batch_s(loader: Any, budget_s: float = PROBE_BUDGET_S,
                  max_batches: int = PROBE_BATCHES) -> tuple[list[tuple[float, float]], str]:
    """Batches of ``loader`` made again in this process, each timed: fetch samples of its
    map-style dataset through its ``collate_fn``, up to ``max_batches`` batches or ``budget_s``,
    back to back on one thread (as a DataLoader worker runs).

    Output: ``([(CPU s, wall s) per batch], how)``; an empty list and why when it cannot probe.
    The global RNGs (torch, Python, NumPy) are restored afterwards, so the user's random stream
    is untouched. An iterable dataset cannot be indexed.
    """
    ds = getattr(loader, "dataset", None)
    bs = getattr(loader, "batch_size", None) or 1
    collate = getattr(loader, "collate_fn", None)
    if ds is None or not hasattr(ds, "__getitem__") or isinstance(ds, torch.utils.data.IterableDataset):
        return [], "unknown: the batches were not timed and the dataset cannot be indexed to probe"
    try:
        n = len(ds)
    except TypeError:
        return [], "unknown: the batches were not timed and the dataset has no length to probe"
    if n <= 0:
        return [], "unknown: the dataset is empty"
    py_state = random.getstate()
    try:
        import numpy as np  # here: numpy loads only on this path
        np_state = np.random.get_state()
    except ImportError:  # pragma: no cover - numpy comes with torch
        np, np_state = None, None
    times: list[tuple[float, float]] = []
    # one thread, as a DataLoader worker runs: thread CPU time then counts all of a batch's work
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.random.fork_rng(devices=[]):
            start = wall_s()
            for k in range(max_batches):
                t0, c0 = wall_s(), cpu_s()
                fetched = [ds[(k * bs + i) % n] for i in range(min(bs, n))]
                if collate is not None:
                    collate(fetched)
                times.append((cpu_s() - c0, wall_s() - t0))
                if wall_s() - start > budget_s:
                    break
    except Exception as exc:  # the probe must never break the profile
        return [], f"unknown: probing the dataset failed ({type(exc).__name__}: {exc})"
    finally:
        torch.set_num_threads(threads)
        random.setstate(py_state)
        if np is not None:
            np.random.set_state(np_state)
    return times, f"{len(times)} batch(es) made again in the main process after the run, on one thread"


# Loss modules and containers are called at depth 0 in most loops but are not the model.
_SKIP_ROOTS = (nn.modules.loss._Loss,)
