"""--dry-run reads checkpoints as shapes only (profiler/dryrun_weights.py): tiny real checkpoints
written to tmp_path, transformers and safetensors for real.

The proof that no weight byte is read: the safetensors files are cut right after their header, so
a real read fails, and ``torch.load``'s zip reader counts the records it reads."""
from __future__ import annotations

import inspect
import json
import os
import struct
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch
import transformers.modeling_utils
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from ccprof.profiler.dryrun import dry_run, is_fake
from ccprof.profiler.dryrun_weights import read_safetensors_header, shapes_only_loads
from ccprof.profiler.hooks import Session


def _llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).to(torch.bfloat16)


def _cut_to_header(path: Path) -> None:
    """Keep the 8-byte length and the JSON header; drop every weight byte."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    os.truncate(path, 8 + n)


def _checkpoint(tmp_path: Path, **save_kw) -> tuple[Path, dict[str, tuple[tuple[int, ...], torch.dtype]]]:
    """A saved tiny Llama (bf16) with its weights cut off, and {name: (shape, dtype)} it holds."""
    model = _llama()
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    out = tmp_path / "ckpt"
    model.save_pretrained(out, **save_kw)
    for f in out.glob("*.safetensors"):
        _cut_to_header(f)
    return out, expected


def _notes(log) -> list:
    return sorted(log.records.values(), key=lambda r: r.what)


def test_from_pretrained_gives_fake_parameters_of_the_checkpoint_and_trains(tmp_path):
    ckpt, expected = _checkpoint(tmp_path)
    with pytest.raises(Exception):          # the weights are not there: a real load cannot work
        AutoModelForCausalLM.from_pretrained(ckpt)

    with dry_run() as log, shapes_only_loads(log) as opened:
        line = inspect.currentframe().f_lineno + 1
        model = AutoModelForCausalLM.from_pretrained(ckpt)
        params = dict(model.named_parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ids = torch.randint(0, 256, (2, 16))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()

    assert all(is_fake(p) for p in params.values())
    assert {k: (tuple(p.shape), p.dtype) for k, p in params.items()} == expected
    assert {p.device.type for p in params.values()} == {"cpu"}
    assert is_fake(loss) and all(is_fake(s["exp_avg"]) for s in opt.state.values())
    assert list(opened) == [str(ckpt / "model.safetensors")]
    [note] = _notes(log)
    # 2 layers x 9 tensors (q, k, v, o, gate, up, down, 2 norms) + embed + norm + lm_head = 21
    assert note.what == "checkpoint weights read as shapes only (model.safetensors, 21 tensors)"
    assert (note.file, note.line) == (__file__, line)
    # bytes not read: bf16 (2 B) x (2 x 256·64 embed/head + 2 x (64·64 + 2·32·64 + 64·64 + 3·64·128 + 2·64) + 64)
    assert note.value == 2 * (2 * 256 * 64 + 2 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64)


def test_every_patched_name_is_restored(tmp_path):
    before = (safetensors.safe_open, safetensors.torch.safe_open, transformers.modeling_utils.safe_open, torch.load)
    env = os.environ.get("HF_DEACTIVATE_ASYNC_LOAD")
    with dry_run() as log, shapes_only_loads(log):
        assert safetensors.safe_open is not before[0]
        assert transformers.modeling_utils.safe_open is safetensors.safe_open
        assert os.environ["HF_DEACTIVATE_ASYNC_LOAD"] == "1"   # transformers loads in this thread, under the mode
    assert (safetensors.safe_open, safetensors.torch.safe_open, transformers.modeling_utils.safe_open,
            torch.load) == before
    assert os.environ.get("HF_DEACTIVATE_ASYNC_LOAD") == env


def test_sharded_checkpoint_notes_one_stand_in_per_file(tmp_path):
    ckpt, expected = _checkpoint(tmp_path, max_shard_size="40KB")
    shards = sorted(p.name for p in ckpt.glob("model-*.safetensors"))
    assert len(shards) > 1 and (ckpt / "model.safetensors.index.json").exists()

    with dry_run() as log, shapes_only_loads(log):
        line = inspect.currentframe().f_lineno + 1
        model = AutoModelForCausalLM.from_pretrained(ckpt)

    assert {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()} == expected
    notes = _notes(log)
    assert [n.what.split("(")[1].split(",")[0] for n in notes] == shards
    per_file = {n.what.split("(")[1].split(",")[0]: int(n.what.split(", ")[1].split()[0]) for n in notes}
    assert sum(per_file.values()) == 21
    assert {(n.file, n.line, n.count) for n in notes} == {(__file__, line, 1)}


def test_load_file_and_safe_open_read_the_header_only(tmp_path):
    model = _llama()
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(path), metadata={"format": "pt"})
    header_tensors, meta = read_safetensors_header(path)
    _cut_to_header(path)

    with dry_run() as log, shapes_only_loads(log):
        state = safetensors.torch.load_file(path)
        with safetensors.safe_open(str(path), framework="pt") as f:
            keys, got_meta = f.keys(), f.metadata()
            sl = f.get_slice("lm_head.weight")
            part = sl[:8]
            slice_shape, slice_dtype = sl.get_shape(), sl.get_dtype()
        target = _llama()
        result = target.load_state_dict(state)

    assert meta == got_meta == {"format": "pt"}
    assert keys == sorted(header_tensors)
    assert all(is_fake(v) for v in state.values())
    assert {k: (list(v.shape), v.dtype) for k, v in state.items()} == {
        k: (h["shape"], torch.bfloat16) for k, h in header_tensors.items()}
    assert (slice_shape, slice_dtype, tuple(part.shape), is_fake(part)) == ([256, 64], "BF16", (8, 64), True)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(is_fake(p) for p in target.parameters())
    # one stand-in per file handle, both at this test's lines
    assert [(n.what, n.count) for n in _notes(log)] == [
        ("checkpoint weights read as shapes only (w.safetensors, 21 tensors)", 1)] * 2


def test_torch_load_reads_no_record(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    model = _llama()
    torch.save(model.state_dict(), path)
    records: list[str] = []

    class CountingReader(torch._C.PyTorchFileReader):
        def get_storage_from_record(self, name, *args):
            records.append(name)
            return super().get_storage_from_record(name, *args)

    monkeypatch.setattr(torch._C, "PyTorchFileReader", CountingReader)
    torch.load(path)
    assert len(records) == 21                 # the counter sees a real load's reads
    records.clear()

    with dry_run() as log, shapes_only_loads(log):
        state = torch.load(path)
        mapped = torch.load(path, mmap=True, weights_only=True)
        target = _llama()
        target.load_state_dict(state)

    assert records == []
    assert all(is_fake(v) for v in [*state.values(), *mapped.values()])
    assert {k: (v.shape, v.dtype) for k, v in state.items()} == {
        k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    # one stand-in per load, at its line
    assert [(n.what, n.count, n.file) for n in _notes(log)] == [
        ("checkpoint weights read as shapes only (ckpt.pt, 21 tensors)", 1, __file__)] * 2


def test_the_session_still_sees_where_the_weights_came_from(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    session = Session(steps=100, warmup=1)
    session.install()
    try:
        with dry_run() as log, shapes_only_loads(log):
            pretrained = AutoModelForCausalLM.from_pretrained(ckpt)
            resumed = _llama()
            resumed.load_state_dict(safetensors.torch.load_file(ckpt / "model.safetensors"))
            target = _llama()           # a copy of a live model (a DQN target net) is not pretrained
            target.load_state_dict(resumed.state_dict())
    finally:
        session.uninstall()

    assert session.loads.pretrained_models[id(pretrained)] == str(ckpt)
    assert id(resumed) in session.loads.loaded_ids
    # every fake tensor's data pointer is 0: the storages are told apart by their own identity
    assert id(target) not in session.loads.loaded_ids


def test_other_frameworks_and_outside_the_dry_run(tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2, 3)}, str(path))
    with dry_run() as log, shapes_only_loads(log):
        with safetensors.safe_open(str(path), framework="numpy") as f:   # numpy arrays: read for real
            arr = f.get_tensor("w")
    assert arr.tolist() == [[1.0] * 3] * 2 and not log.records
    with pytest.raises(RuntimeError, match="inside ccprof.profiler.dryrun.dry_run"):
        with shapes_only_loads(log):
            pass


def test_read_safetensors_header_rejects_a_file_that_is_not_one(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_bytes(struct.pack("<Q", 1 << 40) + json.dumps({}).encode())
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_safetensors_header(bad)


def test_what_the_run_saved_loads_back_though_nothing_was_written(tmp_path):
    """word_language_model saves the best epoch's model (``with open(save, 'wb') as f: torch.save(model,
    f)``) and reloads it for the test: the dry run writes no checkpoint, so torch.load returns what
    torch.save was given, by path or open file, and refuses a whole module under weights_only as
    torch does."""
    import pickle
    best, weights = tmp_path / "best.pt", tmp_path / "weights.pt"
    with dry_run() as log, shapes_only_loads(log):
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        with open(best, "wb") as f:
            torch.save(model, f)
        torch.save(model.state_dict(), weights)
        assert best.stat().st_size == 0 and not weights.exists()      # nothing written
        with open(best, "rb") as f:
            with pytest.raises(pickle.UnpicklingError, match="weights_only"):
                torch.load(f)
        with open(best, "rb") as f:
            again = torch.load(f, weights_only=False)
        state = torch.load(str(weights), map_location="cpu")
        model.load_state_dict(state)
        out = again(torch.randn(2, 8))
        assert again is not model and is_fake(out) and tuple(out.shape) == (2, 4)
        assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert all(is_fake(v) for v in state.values())
    whats = [r.what for r in log.records.values()]
    assert any("best.pt" in w and "loaded what this run saved" in w for w in whats), whats
    assert any("weights.pt" in w and "loaded what this run saved" in w for w in whats), whats
    with pytest.raises(FileNotFoundError):          # outside the dry run nothing is remembered
        torch.load(weights)


def test_a_weights_only_load_accepts_what_torch_accepts(tmp_path):
    """Sets, complex numbers and classes the script allow-listed load back under weights_only, as
    torch's own unpickler loads them; a class nobody allow-listed is refused."""
    import argparse
    import pickle
    ckpt = tmp_path / "ckpt.pt"
    with dry_run() as log, shapes_only_loads(log):
        w = torch.nn.Linear(2, 2).weight
        torch.save({"w": w, "tags": {1, 2}, "z": 1 + 2j, "b": bytearray(b"x"), "args": argparse.Namespace(lr=1)},
                   ckpt)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(ckpt)
        with torch.serialization.safe_globals([argparse.Namespace]):
            back = torch.load(ckpt)
        assert back["tags"] == {1, 2} and back["z"] == 1 + 2j and back["args"].lr == 1
        torch.save({"w": w, "tags": {1, 2}, "z": 1 + 2j}, ckpt)
        assert tuple(torch.load(ckpt)["w"].shape) == (2, 2)
