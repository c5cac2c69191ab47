"""ccprof.profiler.dryrun_compat: what full-size public scripts (llama2.c, nanoGPT) do under
--dry-run that fake tensors alone do not answer. Each test enters ``dry_run()`` and ``compat()``
together, as the harness does, and runs the script's own idiom in-process."""
from __future__ import annotations

import sys

import numpy as np
import torch

from ccprof.profiler.dryrun import dry_run, is_fake
from ccprof.profiler.dryrun_compat import EQUAL, compat

NUMBER = "a tensor read as a number (.item(), float())"


def _here() -> int:
    return sys._getframe(1).f_lineno


def _lines(log) -> set[tuple[int, str, object, int]]:
    return {(r.line, r.what, r.value, r.count) for r in log.records.values() if r.file == __file__}


def test_fstring_of_a_fake_loss_formats_its_stand_in():
    # llama2.c train.py:263 / nanoGPT train.py:265: print(f"... {losses['val']:.4f}")
    with dry_run() as log, compat(log):
        loss = torch.randn(4, 8).mean()
        assert is_fake(loss)
        text, line = f"{loss:.4f} {loss:.1f}", _here()
    assert text == "1.0000 1.0"
    assert _lines(log) == {(line, NUMBER, 1.0, 2)}          # once a read, not twice (no second note)
    assert f"{torch.ones(()):.1f}" == "1.0"                 # after the run: torch's own __format__


def test_torch_equal_of_fake_tensors():
    # llama2.c export.py:82 shared_classifier = torch.equal(model.tok_embeddings.weight, model.output.weight)
    with dry_run() as log, compat(log):
        emb, head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False)
        emb.weight = head.weight                                     # tied: the same memory
        assert torch.equal(emb.weight, head.weight) and emb.weight.equal(head.weight)
        assert not torch.equal(emb.weight, torch.zeros(4, 10))       # another shape: a fact
        assert not log.records
        assert torch.equal(emb.weight, torch.zeros(10, 4)); line = _here()   # the values would decide
    assert _lines(log) == {(line, EQUAL, True, 1)}
    assert torch.equal(torch.ones(2), torch.ones(2)) and not torch.equal(torch.ones(2), torch.zeros(2))


def test_pin_memory_of_a_fake_batch():
    # nanoGPT train.py:128 x.pin_memory().to(device, non_blocking=True) (its CUDA path)
    with dry_run() as log, compat(log):
        x = torch.stack([torch.from_numpy(np.zeros(16, dtype=np.int64))])
        y = x.pin_memory().to("cpu", non_blocking=True)
        assert is_fake(y) and tuple(y.shape) == (1, 16) and y.dtype == torch.int64
    assert not log.records


def test_compat_is_reentrant_and_undone():
    originals = torch.Tensor.__format__, torch.equal, torch.Tensor.equal, torch.Tensor.pin_memory
    with dry_run() as log, compat(log):
        patched = torch.Tensor.__format__, torch.equal, torch.Tensor.equal, torch.Tensor.pin_memory
        assert patched != originals
        with compat(log):
            assert (torch.Tensor.__format__, torch.equal, torch.Tensor.equal, torch.Tensor.pin_memory) == patched
            assert f"{torch.zeros(()).sum():.0f}" == "1"
        assert (torch.Tensor.__format__, torch.equal, torch.Tensor.equal, torch.Tensor.pin_memory) == patched
    assert (torch.Tensor.__format__, torch.equal, torch.Tensor.equal, torch.Tensor.pin_memory) == originals
