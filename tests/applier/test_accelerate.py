"""`ccprof apply` on an Accelerate loop (issue 21): mixed precision and accumulation go on
`Accelerator(...)`; workers, TF32 and the batch size are edited in the code as in a plain loop; DDP
is refused with what to run instead. The rewritten script runs."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ccprof.applier.codemods import apply_source
from tests.helpers.paths import SCRIPTS

SOURCE = (SCRIPTS / "accelerate_loop.py").read_text()


def _apply(*tweaks: str, **tweak_options):
    return apply_source(SOURCE, list(tweaks), tweak_options=tweak_options)


def test_mixed_precision_lands_on_the_accelerator():
    r = _apply("mixed_precision")
    assert r.applied == ["mixed_precision"], r.skipped
    assert 'accelerator = Accelerator(cpu=True, mixed_precision="bf16")' in r.source
    assert "torch.autocast" not in r.source


def test_grad_accumulation_sets_the_steps_and_wraps_the_loop_body():
    r = _apply("grad_accumulation", grad_accumulation={"steps": 4})
    assert r.applied == ["grad_accumulation"], r.skipped
    assert "Accelerator(cpu=True, gradient_accumulation_steps=4)" in r.source
    assert ("    for x, y in train_loader:\n        with accelerator.accumulate(model):\n"
            "            logits = model(x)\n") in r.source
    assert "loss / 4" not in r.source          # Accelerate scales the loss itself


@pytest.mark.parametrize("tweak,expect", [
    ("dataloader", "DataLoader(data, batch_size=16, shuffle=True, num_workers=4, pin_memory=True, "
                   "persistent_workers=True)"),
    ("tf32", "torch.backends.cuda.matmul.allow_tf32 = True"),
])
def test_code_settings_are_edited_as_in_a_plain_loop(tweak, expect):
    r = _apply(tweak)
    assert r.applied == [tweak], r.skipped
    assert expect in r.source


def test_batch_size_edits_the_loader():
    r = _apply("batch_size", batch_size={"batch_size": 64})
    assert r.applied == ["batch_size"], r.skipped
    assert "DataLoader(data, batch_size=64, shuffle=True)" in r.source


def test_distributed_is_refused_with_the_launch_command():
    r = _apply("distributed")
    assert r.applied == []
    (why,) = [w for t, w in r.skipped if t == "distributed"] if isinstance(r.skipped, list) else [r.skipped["distributed"]]
    assert "accelerate launch --multi_gpu" in why


def test_again_is_already_applied():
    once = _apply("mixed_precision", "grad_accumulation", grad_accumulation={"steps": 2})
    again = apply_source(once.source, ["mixed_precision", "grad_accumulation"],
                         tweak_options={"grad_accumulation": {"steps": 2}})
    assert again.applied == [] and set(again.already_applied) == {"mixed_precision", "grad_accumulation"}, again.skipped


def test_the_rewrite_runs(tmp_path):
    r = _apply("mixed_precision", "grad_accumulation", "dataloader", "tf32",
               grad_accumulation={"steps": 2}, dataloader={"num_workers": 1})
    assert sorted(r.applied) == ["dataloader", "grad_accumulation", "mixed_precision", "tf32"], r.skipped
    path = tmp_path / "train_ccprof.py"
    path.write_text(r.source)
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("done ")
