"""--dry-run's fake-tensor run (ccprof.profiler.dryrun): what the script gets where it reads values,
what stops it, and that the ledgers see fake tensors as a real run's tensors."""
from __future__ import annotations

import pytest
import torch

from ccprof.profiler.dryrun import DryRunUnsupported, dry_run, is_fake
from ccprof.profiler.memory import MemoryLedger


def _stand_ins(log):
    return {(r.line, r.what): (r.value, r.count) for r in log.records.values()}


def _line_of(marker: str) -> int:
    import inspect
    src, start = inspect.getsourcelines(_reads)
    return start + next(i for i, text in enumerate(src) if marker in text)


def _reads():
    x = torch.randn(1 << 16, 1 << 16)                   # 16 GiB, no storage
    loss = (x @ x).mean()
    out = {"float": loss.item()}                         # mark:float
    out["int"] = int((x[:4, :4] @ x[:4, :4]).argmax())   # mark:int
    out["nan"] = bool(torch.isnan(loss))                 # mark:nan
    out["inf_any"] = bool(torch.isinf(x).any())          # mark:inf
    out["finite"] = bool(torch.isfinite(loss).all())     # mark:finite
    out["plain_bool"] = bool((loss > 0).all())           # mark:plain
    return x, out


def test_values_read_get_stand_ins_named_by_the_line_that_read_them():
    with dry_run() as log:
        x, out = _reads()
    assert is_fake(x) and x.shape == (1 << 16, 1 << 16)
    # a run is assumed healthy: tests for NaN/Inf are False, any other bool True
    assert out == {"float": 1.0, "int": 1, "nan": False, "inf_any": False, "finite": True, "plain_bool": True}
    seen = _stand_ins(log)
    assert seen[(_line_of("mark:float"), "a tensor read as a number (.item(), float())")] == (1.0, 1)
    assert seen[(_line_of("mark:int"), "an integer tensor read as a number (.item(), int())")] == (1, 1)
    assert seen[(_line_of("mark:nan"), "a NaN/Inf test read as a bool")] == (False, 1)
    assert seen[(_line_of("mark:inf"), "a NaN/Inf test read as a bool")] == (False, 1)
    assert seen[(_line_of("mark:plain"), "a tensor read as a bool")] == (True, 1)
    assert all(r.file == __file__ and r.function == "_reads" for r in log.records.values())


def test_torch_reading_its_own_values_is_not_the_scripts_assumption():
    """AdamW reads its step count with .item() inside torch: that is no line of the script."""
    with dry_run() as log:
        m = torch.nn.Linear(8, 8)
        opt = torch.optim.AdamW(m.parameters(), foreach=False)
        for _ in range(2):
            m(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
    assert log.records == {}
    assert is_fake(m.weight) and is_fake(opt.state[m.weight]["exp_avg"])


def test_indices_sampled_from_known_values_keep_their_real_values():
    """nanoGPT's get_batch: ix from randint, then rows data[i:i + T]. With a stand-in of 1 for both
    i and i + T every row would be empty; integer tensors made from known values are computed for
    real beside the fake (and a nonzero of them has its real shape)."""
    import numpy as np
    data = torch.from_numpy(np.arange(1000, dtype=np.int64))
    with dry_run() as log:
        torch.manual_seed(0)
        ix = torch.randint(len(data) - 9, (4,))
        x = torch.stack([data[i:i + 8] for i in ix])
        step = torch.zeros((), dtype=torch.long)
        for _ in range(3):
            step += 1
        picked = torch.nonzero(ix >= 0)
        steps, first = int(step), int(ix[0])
    torch.manual_seed(0)
    expected = torch.randint(len(data) - 9, (4,))
    assert x.shape == (4, 8) and is_fake(x)
    assert steps == 3 and picked.shape == (4, 1) and first == int(expected[0])
    assert [r.what for r in log.records.values()] == []       # nothing stood in: the values were known
    assert ix.shape == expected.shape


def test_a_shape_that_needs_values_stops_with_a_clear_error():
    with dry_run():
        x = torch.randn(100)
        with pytest.raises(DryRunUnsupported, match="nonzero: its output's shape depends on the tensor's values"):
            torch.nonzero(x > 0)


def test_module_to_dtype_and_real_data_brought_in():
    import numpy as np
    data = torch.from_numpy(np.arange(64, dtype=np.int64))     # a real dataset, made before
    with dry_run():
        m = torch.nn.Sequential(torch.nn.Embedding(64, 16), torch.nn.Linear(16, 4)).to(torch.bfloat16)
        w = m[1].weight
        y = m(data[:8].view(2, 4))
        y.float().sum().backward()
    assert m[1].weight is w and w.dtype == torch.bfloat16 and is_fake(w)
    assert w.grad.dtype == torch.bfloat16 and w.grad.shape == (4, 16)


def test_dataloader_workers_become_the_main_process():
    from torch.utils.data import DataLoader, TensorDataset
    with dry_run() as log:
        loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4, num_workers=2, persistent_workers=True)
        (batch,) = next(iter(loader))
    assert loader.num_workers == 0 and not loader.persistent_workers and batch.shape == (4, 4)
    assert any("num_workers=2" in r.what for r in log.records.values())
    # and the class is itself again afterwards
    assert DataLoader(TensorDataset(torch.randn(8, 4)), num_workers=2).num_workers == 2


def _ledger(fake: bool):
    torch.manual_seed(0)

    def step():
        m = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
        opt = torch.optim.AdamW(m.parameters(), foreach=False)
        m(torch.randn(32, 64)).pow(2).mean().backward()      # warm: AdamW state exists
        opt.step()
        opt.zero_grad()
        led = MemoryLedger({"": m}, [opt], torch.device("cpu"))
        led.start()
        m(torch.randn(32, 64)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        memory, _ = led.stop()
        return memory

    if fake:
        with dry_run():
            return step()
    return step()


def test_the_memory_ledger_counts_fake_storages_as_real_ones():
    real, fake = _ledger(False), _ledger(True)
    for field in ("peak_bytes", "params_bytes", "grads_bytes", "optimizer_state_bytes", "activations_bytes"):
        assert getattr(fake, field) == getattr(real, field) > 0, field


def test_checkpoint_writes_never_replace_the_users_file(tmp_path):
    """torch.save of fake tensors starts the zip and then fails: the user's checkpoint of that name
    would be gone. Under the dry run nothing is written, and the line says so."""
    import safetensors.torch
    ckpt, st = tmp_path / "ckpt.pt", tmp_path / "model.safetensors"
    ckpt.write_text("the user's checkpoint")
    with dry_run() as log:
        m = torch.nn.Linear(4, 4)
        torch.save(m.state_dict(), ckpt)
        safetensors.torch.save_file(m.state_dict(), str(st))
    assert ckpt.read_text() == "the user's checkpoint" and not st.exists()
    notes = sorted(r.what for r in log.records.values())
    assert notes == [f"safetensors.torch.save_file(..., {st}) not written: fake tensors have no values",
                     f"torch.save(..., {ckpt}) not written: fake tensors have no values"]
    torch.save({"w": torch.ones(2)}, ckpt)                 # and saving works again afterwards
    assert torch.load(ckpt)["w"].sum() == 2


def test_save_pretrained_writes_no_weights(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=64)
    with dry_run() as log:
        LlamaForCausalLM(cfg).save_pretrained(tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.safetensors")) and not list((tmp_path / "out").glob("*.bin"))
    assert any("not written" in r.what for r in log.records.values())
