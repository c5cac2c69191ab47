"""--dry-run: checkpoint weights read as shapes only.

A script that fine-tunes starts from a checkpoint: ``from_pretrained(local_dir)``,
``safetensors.torch.load_file(path)``, ``model.load_state_dict(torch.load(path))``. Under the dry
run no weight byte is read: each tensor comes back as a fake tensor of the shape and dtype the file
declares, so an 8B checkpoint "loads" in the time it takes to read its header.

- safetensors: the header is JSON at the start of the file (an 8-byte little-endian length, then
  the JSON: each tensor's dtype, shape and data offsets); ``safe_open`` is replaced by a reader of
  that header alone (https://github.com/huggingface/safetensors#format). ``load_file``,
  ``load_model`` and Hugging Face ``from_pretrained`` all read through ``safe_open``.
- ``torch.load``: torch itself reads only the zip's record sizes under a FakeTensorMode (its
  ``load_tensor`` makes a meta storage of the record's size with the fake device); the wrapper
  only notes the file.
- Hugging Face's loader reads tensors in a thread pool; under the dry run it loads in the
  calling thread (``HF_DEACTIVATE_ASYNC_LOAD=1``), where the fake mode is active.

Each file is noted once in the dry run's log with the script's line that asked for it:
"checkpoint weights read as shapes only (model.safetensors, 7 tensors)".

What the script saved during the dry run and loads back (``torch.save(model, f)`` for the best
epoch, ``torch.load`` of it for the test) is not on disk: the dry run writes no checkpoint. The
object ``torch.save`` was given is kept instead (``remember_save``), and ``torch.load`` of the same
path or file object returns a copy of it, refused as torch would refuse it under
``weights_only``.
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_flatten

__all__ = ["shapes_only_loads", "read_safetensors_header", "remember_save"]

_CCPROF = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# installed libraries and the standard library: the frames between the script and the file read
_LIBRARY_DIRS = tuple(sorted({os.path.abspath(p) for k, p in sysconfig.get_paths().items()
                              if k in ("stdlib", "platstdlib", "purelib", "platlib") and p}))
# safetensors' dtype names (https://github.com/huggingface/safetensors#format, safetensors.torch._TYPES)
_ST_DTYPES = {name: getattr(torch, attr) for name, attr in (
    ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"), ("C64", "complex64"),
    ("I64", "int64"), ("I32", "int32"), ("I16", "int16"), ("I8", "int8"), ("U8", "uint8"), ("BOOL", "bool"),
    ("U64", "uint64"), ("U32", "uint32"), ("U16", "uint16"), ("F8_E4M3", "float8_e4m3fn"),
    ("F8_E4M3FNUZ", "float8_e4m3fnuz"), ("F8_E5M2", "float8_e5m2"), ("F8_E5M2FNUZ", "float8_e5m2fnuz"),
    ("F8_E8M0", "float8_e8m0fnu")) if hasattr(torch, attr)}
_MAX_HEADER_BYTES = 100_000_000         # the format's own limit on the header's size (same spec)
_ASYNC_ENV = "HF_DEACTIVATE_ASYNC_LOAD"


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], dict[str, str] | None]:
    """The tensors a safetensors file declares and its free-form metadata, from the header alone.

    Input: the file's path. Output: ``({name: {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}},
    metadata or None)``; no byte past the header is read.

    Example:
        >>> tensors, meta = read_safetensors_header("ckpt/model.safetensors")
        >>> tensors["lm_head.weight"]["shape"]
        [32000, 512]
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n_bytes,) = struct.unpack("<Q", head)
        if n_bytes > _MAX_HEADER_BYTES:
            raise ValueError(f"{path}: not a safetensors file (a header of {n_bytes} bytes)")
        raw = f.read(n_bytes)
    header = json.loads(raw)
    meta = header.pop("__metadata__", None)
    return header, meta


def _script_line() -> tuple[str, int, str] | None:
    """(file, line, function) of the first frame outside ccprof, torch and installed libraries:
    the script's line that loads the checkpoint (not safetensors' or transformers' own line)."""
    f = sys._getframe(1)
    while f is not None:
        raw = f.f_code.co_filename
        name = os.path.abspath(raw)
        if not (raw.startswith("<") or name.startswith(_CCPROF) or name.startswith(_LIBRARY_DIRS)):
            return name, f.f_lineno, f.f_code.co_name
        f = f.f_back
    return None


def _note(log: Any, what: str, value: Any) -> None:
    """``log.note`` at the script's line. ``StandInLog.note`` takes the line of the first frame
    outside torch and ccprof, which for a load is inside safetensors or transformers."""
    log.note(what, value, where=_script_line())


def _fake(mode: Any, shape: list[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A fake tensor of ``shape``/``dtype`` on ``device``: no storage, nothing read."""
    from torch._guards import active_fake_mode
    if active_fake_mode() is mode:
        return torch.empty(shape, dtype=dtype, device=device)
    from torch.utils._python_dispatch import _disable_current_modes
    with _disable_current_modes():          # another thread, or outside the modes: a plain meta tensor
        meta = torch.empty(shape, dtype=dtype, device="meta")
    return mode.fake_tensor_converter.from_meta_and_device(mode, meta, device)


def _device(device: Any) -> torch.device:
    """safe_open's ``device``: "cpu", "cuda:1", an int (a CUDA index) or a torch.device."""
    return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)


class _ShapesOnlySlice:
    """``safe_open(...).get_slice(name)`` that indexes a fake tensor."""

    def __init__(self, opened: Any, name: str) -> None:
        self._opened, self._name = opened, name

    def get_shape(self) -> list[int]:
        return list(self._opened._tensors[self._name]["shape"])

    def get_dtype(self) -> str:
        return self._opened._tensors[self._name]["dtype"]

    def __getitem__(self, index: Any) -> torch.Tensor:
        t = self._opened.get_tensor(self._name)
        return t if index is Ellipsis else t[index]


def _shapes_only_open(original: Callable, mode: Any, log: Any, counts: dict[str, int]) -> type:
    """A ``safe_open`` class whose tensors are fake, made from the file's header."""

    class _ShapesOnlyOpen:
        __doc__ = "``safetensors.safe_open`` under --dry-run: the header is read, the tensors are fake."

        def __new__(cls, filename: Any, framework: str, device: Any = "cpu", **kwargs: Any) -> Any:
            if framework not in ("pt", "torch", "pytorch"):   # numpy/flax arrays cannot be fake
                return original(filename, framework, device, **kwargs)
            return super().__new__(cls)

        def __init__(self, filename: Any, framework: str, device: Any = "cpu", **kwargs: Any) -> None:
            self._path = os.fspath(filename)
            self._tensors, self._metadata = read_safetensors_header(self._path)
            self._device = _device(device)
            self._noted = False

        def __enter__(self) -> "_ShapesOnlyOpen":
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def keys(self) -> list[str]:
            return sorted(self._tensors)

        def offset_keys(self) -> list[str]:
            return sorted(self._tensors, key=lambda k: self._tensors[k]["data_offsets"][0])

        def metadata(self) -> dict[str, str] | None:
            return self._metadata

        def get_tensor(self, name: str) -> torch.Tensor:
            spec = self._tensors[name]
            dtype = _ST_DTYPES.get(spec["dtype"])
            if dtype is None:
                raise ValueError(f"--dry-run cannot stand in for {name} in {self._path}: dtype "
                                 f"{spec['dtype']} has no torch equivalent here")
            self._note()
            return _fake(mode, list(spec["shape"]), dtype, self._device)

        def get_slice(self, name: str) -> _ShapesOnlySlice:
            if name not in self._tensors:
                raise KeyError(name)
            self._note()
            return _ShapesOnlySlice(self, name)

        def get_tensors(self) -> dict[str, torch.Tensor]:
            return {k: self.get_tensor(k) for k in self.offset_keys()}

        def _note(self) -> None:
            if self._noted:
                return
            self._noted = True
            counts[self._path] = counts.get(self._path, 0) + 1
            not_read_bytes = max((s["data_offsets"][1] for s in self._tensors.values()), default=0)
            _note(log, f"checkpoint weights read as shapes only ({os.path.basename(self._path)}, "
                       f"{len(self._tensors)} tensors)", not_read_bytes)

    return _ShapesOnlyOpen


_SAVED: list[dict[Any, Any]] = []     # the active dry run's torch.save objects, by target (see remember_save)


def _target_key(f: Any) -> Any:
    """What names a save's or load's target: the real path of a path or of an open file, else the
    file-like object itself (a BytesIO saved into and read back)."""
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
    if isinstance(name, (str, os.PathLike)):
        return ("path", os.path.realpath(os.fspath(name)))
    return ("object", id(f))


def remember_save(obj: Any, f: Any) -> None:
    """Keep what ``torch.save(obj, f)`` was given in the dry run, for a ``torch.load`` of ``f`` later
    in the same run (the dry run writes no file)."""
    if _SAVED and f is not None:
        _SAVED[-1][_target_key(f)] = obj


def _weights_only(kwargs: dict[str, Any]) -> bool:
    """Whether torch.load would load with ``weights_only`` here: the argument, else torch's default
    and its environment overrides (torch/serialization.py)."""
    import torch.serialization as ser
    with contextlib.suppress(Exception):
        if ser._get_torch_force_no_weights_only_load():
            return False
    weights_only = kwargs.get("weights_only")
    if weights_only is None:
        with contextlib.suppress(Exception):
            if ser._get_torch_force_weights_only_load():
                return True
        try:
            return bool(ser._default_to_weights_only(kwargs.get("pickle_module")))
        except Exception:
            return True
    return bool(weights_only)


_PLAIN = (torch.Tensor, int, float, complex, bool, str, bytes, bytearray, type(None), torch.dtype, torch.device,
          torch.Size, slice, range)


def _user_safe_types() -> tuple[type, ...]:
    """Classes the script allow-listed for weights-only loads (``torch.serialization.add_safe_globals``
    or the ``safe_globals`` context)."""
    import torch.serialization as ser
    try:
        listed = ser.get_safe_globals()
    except Exception:
        return ()
    listed = [g[0] if isinstance(g, tuple) else g for g in listed]     # (class, "its name") pairs too
    return tuple(g for g in listed if isinstance(g, type))


def _plain(obj: Any, safe: tuple[type, ...] | None = None) -> bool:
    """Whether ``obj`` holds only what a weights-only load accepts: tensors and plain values in
    dicts (OrderedDict, Counter), lists, tuples, sets and frozensets (torch's weights-only
    unpickler's allow-list), and the classes the script allow-listed itself."""
    safe = _user_safe_types() if safe is None else safe
    if isinstance(obj, dict):
        return all(_plain(k, safe) and _plain(v, safe) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return all(_plain(v, safe) for v in obj)
    return isinstance(obj, _PLAIN) or (bool(safe) and isinstance(obj, safe))


def _load_saved(obj: Any, f: Any, kwargs: dict[str, Any], log: Any) -> Any:
    import copy
    import pickle
    if _weights_only(kwargs) and not _plain(obj):
        raise pickle.UnpicklingError(
            f"Weights only load failed: {type(obj).__name__} is not a plain container of tensors "
            "(torch.load's default weights_only=True refuses it; the dry run refuses it as torch would)")
    try:
        with warnings.catch_warnings():       # a fake tensor's copy asks for its data pointer (0)
            warnings.simplefilter("ignore")
            out = copy.deepcopy(obj)
    except Exception:
        out = obj
    name = os.path.basename(os.fspath(f)) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", "a file object")
    _note(log, f"loaded what this run saved to {name} (kept from torch.save: the dry run writes no file)",
          type(obj).__name__)
    return out


def _shapes_only_torch_load(current: Callable, log: Any) -> Callable:
    """``torch.load`` that notes the file it read as shapes: under FakeTensorMode torch reads the
    zip's record sizes only and returns fake tensors. A target this dry run saved to returns what
    was saved (:func:`remember_save`)."""

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        saved = _SAVED[-1] if _SAVED else {}
        key = _target_key(f)
        if key in saved:
            return _load_saved(saved[key], f, kwargs, log)
        out = current(f, *args, **kwargs)
        with contextlib.suppress(Exception):
            tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            from ccprof.profiler.dryrun import is_fake
            if tensors and all(is_fake(t) for t in tensors):
                name = os.path.basename(os.fspath(f)) if isinstance(f, (str, os.PathLike)) else "a file object"
                not_read_bytes = sum(t.untyped_storage().nbytes() for t in
                                     {t.untyped_storage()._cdata: t for t in tensors}.values())
                _note(log, f"checkpoint weights read as shapes only ({name}, {len(tensors)} tensors)",
                      not_read_bytes)
        return out

    load.__wrapped__ = current
    return load


def _bound_to(value: Any) -> list[tuple[Any, str]]:
    """(module, attribute) pairs in sys.modules holding ``value`` (``from safetensors import safe_open``)."""
    found = []
    for module in list(sys.modules.values()):
        with contextlib.suppress(Exception):
            for attr, v in list(vars(module).items()):
                if v is value:
                    found.append((module, attr))
    return found


_ACTIVE: list[dict[str, int]] = []       # the counts of the shapes_only_loads now active


@contextlib.contextmanager
def shapes_only_loads(log: Any) -> Iterator[dict[str, int]]:
    """Inside ``dry_run()``: checkpoint loads return fake tensors of the file's shapes and dtypes,
    without reading the weights; each file is noted in ``log`` (a ``StandInLog``).

    Input: the dry run's log. Yields ``{path: times opened}`` for the safetensors files read as
    shapes. Every patched name is restored on exit.

    Example:
        >>> with dry_run() as log, shapes_only_loads(log):
        ...     model = AutoModelForCausalLM.from_pretrained("ckpt")    # fake parameters, no bytes read
    """
    from torch._guards import active_fake_mode
    mode = active_fake_mode()
    if mode is None:
        raise RuntimeError("shapes_only_loads() runs inside ccprof.profiler.dryrun.dry_run(): "
                           "no FakeTensorMode is active")
    if _ACTIVE:                 # dry_run() entered it already: the same loads, noted once
        yield _ACTIVE[-1]
        return
    counts: dict[str, int] = {}
    from ccprof.profiler.dryrun import Patches
    patches = Patches()
    try:
        import safetensors
        import safetensors.torch  # noqa: F401  (load_file reads through its module's safe_open)
    except ImportError:
        safetensors = None
    if safetensors is not None:
        original = safetensors.safe_open
        fake_open = _shapes_only_open(original, mode, log, counts)
        for module, attr in _bound_to(original):
            patches.set(module, attr, fake_open)
    patches.set(torch, "load", _shapes_only_torch_load(torch.load, log))
    env_before = os.environ.get(_ASYNC_ENV)
    os.environ[_ASYNC_ENV] = "1"
    _ACTIVE.append(counts)
    _SAVED.append({})
    try:
        yield counts
    finally:
        _SAVED.pop()
        _ACTIVE.pop()
        if env_before is None:
            os.environ.pop(_ASYNC_ENV, None)
        else:
            os.environ[_ASYNC_ENV] = env_before
        patches.undo()
        if safetensors is not None:         # modules imported meanwhile took the stand-in by name
            for module, attr in _bound_to(fake_open):
                setattr(module, attr, original)
