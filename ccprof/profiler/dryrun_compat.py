"""What public training scripts do under --dry-run that fake tensors alone do not answer.

``dry_run()`` (ccprof/profiler/dryrun.py) makes every tensor fake and answers scalar reads with
stand-ins. Full-size public scripts (karpathy/llama2.c, karpathy/nanoGPT) also do things that go
around the dispatcher or that FakeTensorMode does not implement, each handled here for the dry run
only and undone after it:

- ``f"{loss:.4f}"`` on a 0-dim tensor (both scripts print their losses so): ``Tensor.__format__``
  reads the value only when ``type(self) is Tensor``, so a ``FakeTensor`` reaches
  ``object.__format__`` and raises ``TypeError``. A fake 0-dim tensor formats as its stand-in
  value (``.item()``, which the stand-in mode answers and notes with the script's line).
- ``torch.equal(a, b)`` (llama2.c's ``export.py`` asks whether the output head is tied to the
  embedding): a bool that depends on values, which FakeTensorMode refuses. Two tensors on the same
  memory are equal and tensors of other shapes or dtypes are not, both facts; otherwise the
  stand-in is True, noted.
- ``tensor.pin_memory()`` (nanoGPT's CUDA batch path, ``x.pin_memory().to(device,
  non_blocking=True)``): FakeTensorMode has no ``_pin_memory``. A fake tensor has no memory to
  page-lock: it pins as a fake copy.

All three are Python-level replacements (no dispatch mode: a mode of ccprof's between the script
and the stand-in mode would hide the script's reads from ``StandInMode``'s note). ``compat(log)``
is entered inside ``dry_run()``; entering it again while it is active is a no-op.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["compat", "EQUAL"]

_aten = torch.ops.aten
EQUAL = "torch.equal of two tensors read as a bool"

_lock = threading.Lock()
_depth = 0


def _format_fallback(patches: Any) -> None:
    """Fake 0-dim tensors format as their stand-in value, as real ones format as theirs."""
    from ccprof.profiler.dryrun import is_fake
    original = torch.Tensor.__format__

    def fmt(self: torch.Tensor, format_spec: str) -> str:
        if is_fake(self) and self.dim() == 0:
            # the stand-in mode notes the read at the script's line (dryrun* frames are its own)
            return self.detach().item().__format__(format_spec)
        return original(self, format_spec)
    patches.set(torch.Tensor, "__format__", fmt)


def _equal_fallback(log: Any, patches: Any) -> None:
    """``torch.equal`` / ``Tensor.equal`` on fake tensors: facts first (the same memory; other
    shapes or dtypes), else the stand-in True, noted at the script's line."""
    from ccprof.profiler.dryrun import is_fake
    original_fn, original_method = torch.equal, torch.Tensor.equal

    def decide(a: Any, b: Any) -> bool | None:
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and (is_fake(a) or is_fake(b))):
            return None
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if (is_fake(a) and is_fake(b) and a.untyped_storage()._cdata == b.untyped_storage()._cdata
                and a.storage_offset() == b.storage_offset() and a.stride() == b.stride()):
            return True
        if log is not None:
            log.note(EQUAL, True)
        return True

    def equal(a: Any, b: Any) -> bool:
        answer = decide(a, b)
        return original_fn(a, b) if answer is None else answer

    def equal_method(self: Any, other: Any) -> bool:
        answer = decide(self, other)
        return original_method(self, other) if answer is None else answer
    patches.set(torch, "equal", equal)
    patches.set(torch.Tensor, "equal", equal_method)


def _pin_fallback(patches: Any) -> None:
    """``Tensor.pin_memory()`` of a fake tensor: a fake copy (no memory to page-lock)."""
    from ccprof.profiler.dryrun import is_fake
    original = torch.Tensor.pin_memory

    def pin_memory(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.clone() if is_fake(self) else original(self, *args, **kwargs)
    patches.set(torch.Tensor, "pin_memory", pin_memory)


@contextlib.contextmanager
def compat(log: Any = None) -> Iterator[None]:
    """Handle what fake tensors cannot do alone (see the module's docstring) in the enclosed block.

    ``log``: the dry run's ``StandInLog`` (stand-ins made here are noted in it). Re-entrant: an
    inner ``compat()`` while one is active changes nothing.

    Example:
        >>> from ccprof.profiler.dryrun import dry_run
        >>> with dry_run() as log, compat(log):
        ...     f"{torch.randn(3).sum():.2f}"
        '1.00'
    """
    global _depth
    with _lock:
        _depth += 1
        first = _depth == 1
    from ccprof.profiler.dryrun import Patches
    patches = Patches()
    if first:
        _format_fallback(patches)
        _equal_fallback(log, patches)
        _pin_fallback(patches)
    try:
        yield
    finally:
        patches.undo()
        with _lock:
            _depth -= 1
