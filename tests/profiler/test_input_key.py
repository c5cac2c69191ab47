"""input_key: what a forward was fed, as the profiler compares it step after step (DataInfo.same_inputs)."""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ccprof.profiler.session_base import FULL_HASH_ELEMENTS, input_key


def test_same_values_same_key_whatever_the_tensor_object():
    x, h = torch.randn(6, 5, 29), torch.zeros(1, 6, 128)
    assert input_key(((x, h), {})) == input_key(((x.clone(), h.clone()), {}))
    assert input_key(((x,), {})) != input_key(((x + 1,), {}))                 # other values
    assert input_key(((x,), {})) != input_key(((x.reshape(6, 145),), {}))     # other shape
    assert input_key(((x,), {})) != input_key(((x.double(),), {}))            # other dtype
    assert input_key(((x, h), {})) != input_key(((x, h + 1), {}))             # every tensor counts
    assert input_key((("text",), {"n": 3})) is None                           # no tensor: nothing to compare


def test_one_changed_value_changes_the_key_up_to_the_full_hash_size():
    # one-hot rows (seq2seq's np.eye inputs): batches differ in a few positions only
    a = torch.zeros(FULL_HASH_ELEMENTS)
    b = a.clone()
    b[12345] = 1.0
    assert input_key(((a,), {})) != input_key(((b,), {}))


def test_the_reads_are_invisible_to_dispatch_modes():
    """The FLOP and memory passes are TorchDispatchModes: hashing must not add ops to their step."""
    seen: list[str] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    x = torch.randn(4, 3)[:, :2]                          # not contiguous: a copy is made to read it
    with Record():
        key = input_key(((x,), {}))
    assert key is not None and seen == []
