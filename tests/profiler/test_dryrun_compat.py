"""ccprof.profiler.dryrun_compat: what full-size public scripts (llama2.c, nanoGPT) do under
--dry-run that fake tensors alone do not answer. Each test enters ``dry_run()`` and ``compat()``
together, as the harness does, and runs the script's own idiom in-process."""
from __future__ import annotations

import sys

import numpy as np
import torch

from ccprof.profiler.dryrun import dry_run, is_fake
from ccprof.profiler.dryrun_compat import DERIVED, compat
from ccprof.profiler.flops import FlopPass


def _here() -> int:
    return sys._getframe(1).f_lineno


def _lines(log) -> set[tuple[int, str, object]]:
    return {(r.line, r.what, r.value) for r in log.records.values() if r.file == __file__}


NUMBER = "a tensor read as a number (.item(), float())"
INDEX = "an integer tensor read as a number (.item(), int())"


def test_fstring_of_a_fake_loss_formats_its_stand_in():
    # llama2.c train.py:263 / nanoGPT train.py:265: print(f"... {losses['val']:.4f}")
    with dry_run() as log, compat(log):
        loss = torch.randn(4, 8).mean()
        assert is_fake(loss)
        text, line = f"{loss:.4f}", _here()
    assert text == "1.0000"
    assert _lines(log) == {(line, NUMBER, 1.0)}
    assert f"{torch.ones(()):.1f}" == "1.0"         # a real tensor after the run: torch's own


def test_memmap_slice_by_a_random_index_keeps_the_block(tmp_path):
    # nanoGPT train.py:123-124: ix = torch.randint(len(data) - block_size, (batch_size,));
    # torch.stack([torch.from_numpy(data[i:i+block_size].astype(np.int64)) for i in ix])
    path = tmp_path / "train.bin"
    np.arange(1000, dtype=np.uint16).tofile(path)
    data = np.memmap(path, dtype=np.uint16, mode="r")
    block_size, batch_size = 64, 3
    with dry_run() as log, compat(log):
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([torch.from_numpy((data[i:i + block_size]).astype(np.int64)) for i in ix]); line = _here()
    assert tuple(x.shape) == (batch_size, block_size)           # not (3, 0): i and i+64 are 1 and 65
    # the reads NumPy made (operator.index) are the script's line, not numpy/_core/memmap.py's
    assert _lines(log) == {(line, INDEX, 1), (line, INDEX + DERIVED, 65)}
    assert not [r for r in log.records.values() if "numpy" in r.file]


def test_arithmetic_on_stand_ins_and_what_forgets_it():
    with dry_run() as log, compat(log):
        i = torch.randint(10, ())
        assert int(i) == 1 and int(i + 64) == 65 and int((i + 1) * 3) == 6
        assert float(i.float() / 4) == 0.25
        assert bool(i + 1 > 1)
        j = i + 5
        j.add_(1)                      # in place: the value is no longer the arithmetic's
        assert int(j) == 1
        big = torch.randn(8)
        total = big.sum()
        assert float(total) == 1.0      # a reduction of a larger tensor is a plain stand-in...
        assert float(total + 1) == 2.0  # ...and arithmetic on it starts from that stand-in


def test_reads_under_a_flop_pass_keep_the_script_line():
    # ccprof's FLOP pass puts torch's FlopCounterMode and its own mode above the dry run's: a
    # loss read inside it (llama2.c's estimate_loss at iter 0) is still the script's stand-in
    with dry_run() as log, compat(log):
        model = torch.nn.Linear(8, 8)
        fp = FlopPass({"": model})
        fp.start()
        loss = model(torch.randn(2, 8)).pow(2).mean()
        value, line = loss.item(), _here()
        loss.backward()
        flops, _ = fp.stop()
    assert value == 1.0 and flops.per_step > 0
    assert (line, NUMBER, 1.0) in _lines(log)


def test_compat_is_reentrant_and_undone():
    original = torch.Tensor.__format__
    with dry_run() as log, compat(log):
        patched = torch.Tensor.__format__
        with compat(log):
            assert torch.Tensor.__format__ is patched
            assert f"{torch.zeros(()).sum():.0f}" == "1"
        assert torch.Tensor.__format__ is patched
    assert torch.Tensor.__format__ is original


def test_checkpoint_of_fake_tensors_is_not_written(tmp_path):
    # nanoGPT train.py:286 / llama2.c train.py:292 torch.save(checkpoint, ...) at eval_interval
    path = tmp_path / "ckpt.pt"
    with dry_run() as log, compat(log):
        model = torch.nn.Linear(8, 8)
        opt = torch.optim.AdamW(model.parameters())
        model(torch.randn(2, 8)).sum().backward()
        opt.step()
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iter_num": 1}, path); line = _here()
        torch.save({"iter_num": 1}, tmp_path / "plain.pt")        # nothing fake: written
    assert not path.exists() and (tmp_path / "plain.pt").is_file()
    assert _lines(log) == {(line, "torch.save of fake tensors skipped: nothing written", str(path))}


def test_pin_memory_of_a_fake_batch():
    # nanoGPT train.py:128 x.pin_memory().to(device, non_blocking=True)
    with dry_run() as log, compat(log):
        x = torch.stack([torch.from_numpy(np.zeros(16, dtype=np.int64))])
        y = x.pin_memory().to("cpu", non_blocking=True)
    assert is_fake(y) and tuple(y.shape) == (1, 16)


def test_torch_equal_of_fake_tensors():
    # llama2.c export.py:82 shared_classifier = torch.equal(model.tok_embeddings.weight, model.output.weight)
    with dry_run() as log, compat(log):
        emb, head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False)
        emb.weight = head.weight                                     # tied: the same memory
        assert torch.equal(emb.weight, head.weight)
        assert not torch.equal(emb.weight, torch.zeros(4, 10))       # other shape: a fact
        assert not log.records
        assert torch.equal(emb.weight, torch.zeros(10, 4)); line = _here()   # the values would decide
    assert _lines(log) == {(line, "torch.equal of two tensors read as a bool", True)}
