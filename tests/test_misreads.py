"""One regression test per misread that issue 11 found on public scripts (each with its small
script under tests/scripts/); the run-size misread has its own file, tests/test_run_size.py."""
from __future__ import annotations

from pathlib import Path

from ccprof.hardware import attach
from ccprof.profiler.runner import run_script

SCRIPTS = Path(__file__).parent / "scripts"


def test_gan_backwards_are_not_accumulation_and_a_peek_is_not_data():
    """dcgan: three backwards, two optimizers per iteration; the DDP tutorial's next(iter(loader))."""
    r = run_script(SCRIPTS / "peek_and_gan.py", [], steps=3, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    p = attach(r.profile, gpu="a100-80gb")
    assert p.steps.micro_batches == 1                          # not "grad_accumulation: already applied"
    assert [o.class_ for o in p.optimizer.optimizers] == ["Adam", "Adam"]
    assert p.data.duplicate_frac == 0.0                        # random rows: the peeked batch is not a duplicate
    assert p.data.steps_per_epoch == 16 and p.data.finite
    assert p.cost.run_steps == 80 and p.cost.run_steps_source.startswith("for ... in range(5)")
