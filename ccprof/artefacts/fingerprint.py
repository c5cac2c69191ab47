"""What makes two training examples "the same": one fingerprint for the profiler's sampled
duplicate share (``data.fingerprints``, hashed from the batches a run draws) and for
``--scan-data`` (every example of a map-style dataset), so the two shares count the same thing.

An example is fingerprinted by its *input*, the array :func:`example_input` picks (``input_ids``,
``pixel_values``... of a dict, else the first array of a tuple), by its dtype, shape and bytes.
Labels are left out on purpose: the profiler sees collated batches, where only the input is
found the same way in every loader, and an input seen twice costs its compute twice whatever
its label says. A batch's rows fingerprint exactly as the examples collated into it:

    row_fingerprints(xb)[i] == fingerprint(dataset[i])      # xb, yb = default_collate([...])

Examples with no array (token ids as Python ints) use those ids as an int64 array; anything
else (raw text) is hashed whole. Torch and numpy load only when an example needs them.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

from ccprof.artefacts.vocab import dtype_name

__all__ = ["INPUT_KEYS", "DIGEST_BYTES", "example_input", "fingerprint", "row_fingerprints"]

# the keys that name a batch's or an example's input, in the order they are looked for
INPUT_KEYS = ("input_ids", "pixel_values", "input", "x", "inputs")
DIGEST_BYTES = 8        # 64 bits: a chance collision among 10^6 examples is ~3e-8
_MAX_DEPTH = 3


def _is_array(x: Any) -> bool:
    """A torch tensor or numpy array (or numpy scalar): anything with a dtype and a shape."""
    return hasattr(x, "dtype") and hasattr(x, "shape") and not isinstance(x, (str, bytes, type))


def example_input(obj: Any, is_array: Callable[[Any], bool] = _is_array, depth: int = 0) -> Any:
    """The input of an example or a collated batch: ``obj`` itself if it is an array, else
    the first of ``INPUT_KEYS`` of a dict that holds an array, else the first array found
    in its values or items (three levels deep); None when there is none.

    Example: ``example_input((x, y)) is x``; ``example_input({"labels": l, "input_ids": i}) is i``.
    """
    if is_array(obj):
        return obj
    if depth > _MAX_DEPTH:
        return None
    if isinstance(obj, dict):
        for key in INPUT_KEYS:
            if is_array(obj.get(key)):
                return obj[key]
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for v in obj:
            found = example_input(v, is_array, depth + 1)
            if found is not None:
                return found
    return None


def _numpy(a: Any) -> tuple[str, Any]:
    """``a``'s dtype name and its values as a C-contiguous numpy array (bfloat16 as its bits)."""
    import numpy as np  # here: numpy loads only when an example is hashed
    if hasattr(a, "detach"):                    # a torch tensor
        t = a.detach().to("cpu").contiguous()
        name = dtype_name(t.dtype)
        if name == "bfloat16":                  # numpy has no bfloat16: hash its 16 bits
            import torch  # here: the tensor's own library, already loaded
            t = t.view(torch.int16)
        return name, t.numpy()
    arr = np.ascontiguousarray(a)
    return dtype_name(arr.dtype), arr


def _digest(dtype: str, shape: tuple[int, ...], data: bytes) -> str:
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    h.update(f"{dtype}{shape}".encode())
    h.update(data)
    return h.hexdigest()


def _int_ids(example: Any) -> list[int] | None:
    """Token ids held as Python ints: the example itself, its ``input_ids`` or its first item."""
    x = example
    if isinstance(x, dict):
        x = x.get("input_ids")
    elif isinstance(x, (list, tuple)) and x and isinstance(x[0], (list, tuple)):
        x = x[0]
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        return list(x)
    return None


def _canon(x: Any, h: "hashlib._Hash") -> None:
    """Feed a whole example without arrays (text, nested records) to ``h``, keys sorted."""
    if isinstance(x, dict):
        for k in sorted(x, key=str):
            h.update(f"K{k}".encode())
            _canon(x[k], h)
    elif isinstance(x, (list, tuple)):
        h.update(f"L{len(x)}".encode())
        for v in x:
            _canon(v, h)
    else:
        h.update(repr(x).encode())


def fingerprint(example: Any) -> str:
    """The hex digest of one example's input (see the module's docstring for what that is).

    Example: ``fingerprint((torch.ones(3), 0)) == fingerprint((torch.ones(3), 1))``: same input.
    """
    x = example_input(example)
    if x is None:
        ids = _int_ids(example)
        if ids is not None:
            import numpy as np  # here: numpy loads only when an example is hashed
            x = np.asarray(ids, dtype=np.int64)
    if x is None:
        h = hashlib.blake2b(digest_size=DIGEST_BYTES)
        _canon(example, h)
        return h.hexdigest()
    name, arr = _numpy(x)
    return _digest(name, tuple(arr.shape), arr.tobytes())


def row_fingerprints(batch_input: Any) -> list[str]:
    """The fingerprint of each row of a collated batch's input (``example_input(batch)``), the
    same as :func:`fingerprint` of the example that row came from; [] for a 0-d input.

    Example: ``row_fingerprints(torch.stack([a, b])) == [fingerprint(a), fingerprint(b)]``.
    """
    name, arr = _numpy(batch_input)
    if arr.ndim == 0:
        return []
    shape = tuple(arr.shape[1:])
    return [_digest(name, shape, row.tobytes()) for row in arr]
