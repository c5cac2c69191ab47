"""What public training scripts do under --dry-run that fake tensors alone do not answer.

``dry_run()`` (ccprof/profiler/dryrun.py) makes every tensor fake and answers scalar reads with
stand-ins. Full-size public scripts (karpathy/llama2.c, karpathy/nanoGPT) also do things that go
around the dispatcher, each patched here for the dry run only and undone after it:

- ``f"{loss:.4f}"`` on a 0-dim tensor: ``Tensor.__format__`` reads the value only when
  ``type(self) is Tensor``, so a ``FakeTensor`` reaches ``object.__format__`` and raises
  ``TypeError``. Here a fake 0-dim tensor is formatted as its stand-in value (``.item()``, which
  the stand-in mode answers and records with the script's line).
- scalar arithmetic on stand-ins: nanoGPT's ``get_batch`` slices its memmap with
  ``data[i:i+block_size]`` where ``i`` is an element of ``torch.randint(...)``. Read one by one,
  ``i`` and ``i+block_size`` both stand in as 1 and the batch is empty (``(B, 0)``: no tokens,
  no FLOPs). ``ScalarValues`` keeps how each one-element tensor was computed from other
  one-element tensors (pointwise ops, copies) and reads it as that arithmetic on the stand-ins
  it came from: ``i`` is 1, ``i+block_size`` is ``1+block_size``, the slice has ``block_size``
  tokens. Only tensors the script made by arithmetic get a derived value; everything else
  (a loss, a random draw, an element of a larger tensor) stays the stand-in mode's.
- ``torch.save`` of fake tensors (a checkpoint at ``eval_interval``): they cannot be pickled
  (no storage). Nothing is written; the skipped save is a stand-in with the script's line.
- ``torch.equal(a, b)`` on fake tensors: equal when they share their memory (tied weights), not
  when shapes or dtypes differ; else a stand-in True.
- ``tensor.pin_memory()`` (nanoGPT's CUDA batch path, ``pin_memory().to(device,
  non_blocking=True)``): FakeTensorMode has no ``_pin_memory``; a fake tensor pins as itself.
- the stand-in's line: a read that NumPy makes (``operator.index(t)`` when slicing) is the
  script's line that called NumPy, and reads during ccprof's own measurement passes (its dispatch
  modes sit above the dry run's) are still the script's.

Entered by ``compat(log)`` inside ``dry_run()``; entering it again while it is active (the
harness and ``dry_run()`` both) is a no-op.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

__all__ = ["compat", "ScalarValues"]

_aten = torch.ops.aten
_HERE = os.path.abspath(__file__)
_CCPROF = os.path.dirname(os.path.dirname(_HERE))
_TORCH = os.path.dirname(os.path.abspath(torch.__file__))
_NUMPY = os.path.dirname(os.path.abspath(numpy.__file__))
# ops that pass a value on unchanged (up to its dtype)
_COPIES = {_aten.clone.default, _aten.detach.default, _aten.alias.default, _aten._to_copy.default,
           _aten.lift_fresh.default, _aten.lift_fresh_copy.default}

_lock = threading.Lock()
_depth = 0


def _format_fallback():
    """Fake 0-dim tensors format as their stand-in value, as real ones format as theirs."""
    from ccprof.profiler.dryrun import is_fake
    original = torch.Tensor.__format__

    def fmt(self: torch.Tensor, format_spec: str) -> str:
        if is_fake(self) and self.dim() == 0:
            return self.detach().item().__format__(format_spec)
        return original(self, format_spec)
    torch.Tensor.__format__ = fmt
    return lambda: setattr(torch.Tensor, "__format__", original)


# what an op is to ScalarValues, by op (filled as ops are met)
_MUTATES, _ARITHMETIC, _OTHER = "mutates", "arithmetic", "other"
_KIND: dict[Any, str] = {}


def _one(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.numel() == 1


def _tensors(tree: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    stack = [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    return out


DERIVED = " (arithmetic on stand-ins)"


def _what(dtype: torch.dtype, value: Any, derived: bool = False) -> str:
    """The stand-in mode's words for a read (ccprof.profiler.dryrun.StandInMode); a value derived
    by arithmetic from other stand-ins says so."""
    if derived:
        kind = "a tensor read as a bool" if dtype == torch.bool else _what(dtype, value)
        return kind + DERIVED
    if dtype == torch.bool:
        return "a tensor read as a bool" if value else "a NaN/Inf test read as a bool"
    if dtype.is_floating_point or dtype.is_complex:
        return "a tensor read as a number (.item(), float())"
    return "an integer tensor read as a number (.item(), int())"


def _asked_by_ccprof() -> bool:
    """True when ccprof's own code (not the script) read the value. ccprof's dispatch modes (the
    FLOP and memory passes) sit between the script and this mode: their frames do not count."""
    f = sys._getframe(2)
    while f is not None:
        name = os.path.abspath(f.f_code.co_filename)
        if name.startswith(_CCPROF):
            if name != _HERE and f.f_code.co_name != "__torch_dispatch__" \
                    and not name.startswith(os.path.join(_CCPROF, "profiler", "dryrun.py")):
                return True
        elif not name.startswith(_TORCH):
            return False
        f = f.f_back
    return False


def script_line() -> tuple[str, int, str] | None:
    """(file, line, function) of the script's code that read a value: the first frame outside
    torch's dispatch machinery and modes (ccprof's FLOP pass runs under torch's FlopCounterMode),
    NumPy (which reads a tensor as an index when the script slices an array with it) and ccprof.
    None when torch itself read it (an optimizer's step count)."""
    from ccprof.profiler.dryrun import _MACHINERY
    f = sys._getframe(1)
    while f is not None:
        name = os.path.abspath(f.f_code.co_filename)
        if (name.startswith((_CCPROF, _NUMPY)) or name.startswith(_MACHINERY)
                or f.f_code.co_name == "__torch_dispatch__" or f.f_code.co_filename.startswith("<")):
            f = f.f_back
            continue
        if name.startswith(_TORCH):
            return None
        return name, f.f_lineno, f.f_code.co_name
    return None


def _note(log: Any, what: str, value: Any) -> None:
    """``StandInLog.note`` with the script's line from ``script_line``."""
    from ccprof.profiler.dryrun import _Record
    where = script_line()
    if log is None or where is None:
        return
    key = (where[0], where[1], what)
    with log.lock:
        rec = log.records.get(key)
        if rec is None:
            rec = log.records[key] = _Record(what, value, *where)
        rec.count += 1


class ScalarValues(TorchDispatchMode):
    """Above the dry run's stand-in mode: one-element tensors made by arithmetic from other
    one-element tensors read as that arithmetic on their stand-ins; every read is noted with the
    script's line.

    A read of a tensor with no recorded arithmetic goes down to the stand-in mode (1, 1.0, True,
    False for a NaN/Inf test). An in-place op on a tensor forgets its arithmetic (it reads as a
    stand-in from then on)."""

    def __init__(self, log: Any) -> None:
        super().__init__()
        self.log = log
        self.made: "torch.utils.weak.WeakIdKeyDictionary" = torch.utils.weak.WeakIdKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _aten._local_scalar_dense.default:
            t = args[0]
            value, derived = self._value(t)
            if not _asked_by_ccprof():
                _note(self.log, _what(t.dtype, value, derived), value)
            return value
        if func is _aten.equal.default:
            return self._equal(*args)
        if func is _aten._pin_memory.default:
            return args[0]                  # no page-locked memory for a tensor with no storage
        if func is _aten.is_pinned.default:
            return True
        out = func(*args, **kwargs)
        kind = _KIND.get(func)
        if kind is None:
            kind = _KIND[func] = (_MUTATES if func._schema.is_mutable else
                                  _ARITHMETIC if func in _COPIES or torch.Tag.pointwise in func.tags else _OTHER)
        if kind is _MUTATES:
            if len(self.made):
                for t in _tensors((args, kwargs)):
                    self.made.pop(t, None)
        elif kind is _ARITHMETIC and _one(out) and all(_one(t) for t in _tensors((args, kwargs))):
            self.made[out] = (func, args, kwargs)
        return out

    def _equal(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """``torch.equal(a, b)`` (llama2.c's export asks whether the output head is tied to the
        embedding): the same memory is equal and other shapes or dtypes are not, both facts;
        otherwise the values would decide, and the stand-in is True."""
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        from ccprof.profiler.dryrun import is_fake
        if not (is_fake(a) or is_fake(b)):
            with _disable_current_modes():
                return bool(torch.equal(a, b))
        if (a.untyped_storage()._cdata == b.untyped_storage()._cdata and a.storage_offset() == b.storage_offset()
                and a.stride() == b.stride()):
            return True
        if not _asked_by_ccprof():
            _note(self.log, "torch.equal of two tensors read as a bool", True)
        return True

    def _value(self, t: torch.Tensor) -> tuple[Any, bool]:
        """(t's value, whether it was derived): its arithmetic on its inputs' values, else the
        stand-in mode's answer (a real tensor's own value)."""
        from ccprof.profiler.dryrun import is_fake
        if not is_fake(t):
            with _disable_current_modes():
                return t.item(), False
        how = self.made.get(t)
        if how is not None:
            func, args, kwargs = how
            try:
                if func in _COPIES:         # the same value (a copy of a stand-in is that stand-in)
                    value, derived = self._value(_tensors(args)[0])
                    with _disable_current_modes():
                        return torch.tensor(value).to(t.dtype).item(), derived
                values = {id(a): self._value(a)[0] for a in _tensors((args, kwargs))}
                with _disable_current_modes():
                    real = _real(args, values), _real(kwargs, values)
                    return func(*real[0], **real[1]).to(t.dtype).item(), True
            except Exception:       # an op the arithmetic cannot redo: the plain stand-in
                pass
        return _aten._local_scalar_dense.default(t), False     # the mode below: the stand-in


def _real(tree: Any, values: dict[int, Any]) -> Any:
    """``tree`` with each tensor replaced by a real one-element tensor of its value."""
    if isinstance(tree, torch.Tensor):
        return torch.tensor(values[id(tree)], dtype=tree.dtype).reshape(tree.shape)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_real(x, values) for x in tree)
    if isinstance(tree, dict):
        return {k: _real(v, values) for k, v in tree.items()}
    return tree


def _has_fake(obj: Any, depth: int = 0) -> bool:
    """True when ``obj`` (a checkpoint: dicts, lists, tensors, modules, objects) holds a fake tensor."""
    from ccprof.profiler.dryrun import is_fake
    if isinstance(obj, torch.Tensor):
        return is_fake(obj)
    if depth > 8:
        return False
    if isinstance(obj, torch.nn.Module):
        return any(is_fake(t) for t in obj.state_dict().values())
    if isinstance(obj, dict):
        return any(_has_fake(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return any(_has_fake(v, depth + 1) for v in obj)
    return False


def _save_fallback(log: Any):
    """``torch.save`` of fake tensors writes nothing (they have no values); noted as a stand-in."""
    original = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if not _has_fake(obj):
            return original(obj, f, *args, **kwargs)
        _note(log, "torch.save of fake tensors skipped: nothing written",
              os.fspath(f) if isinstance(f, (str, os.PathLike)) else None)
        return None
    torch.save = save
    return lambda: setattr(torch, "save", original)


@contextlib.contextmanager
def compat(log: Any = None) -> Iterator[None]:
    """Patch what fake tensors cannot do alone (see the module's docstring) for the enclosed block.

    ``log``: the dry run's ``StandInLog`` (stand-ins made here are noted in it). Re-entrant: an
    inner ``compat()`` while one is active changes nothing.

    Example:
        >>> from ccprof.profiler.dryrun import dry_run
        >>> with dry_run() as log, compat(log):
        ...     f"{torch.ones(()).sum():.2f}"
        '1.00'
    """
    global _depth
    with _lock:
        _depth += 1
        first = _depth == 1
    undo = [_format_fallback(), _save_fallback(log)] if first else []
    mode = ScalarValues(log) if first else contextlib.nullcontext()
    try:
        with mode:
            yield
    finally:
        for u in reversed(undo):
            u()
        with _lock:
            _depth -= 1
