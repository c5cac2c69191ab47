"""batch_size on real runs: a closure optimizer (LBFGS) is not offered a larger batch, and a small
map-style training set caps the batch; the rewrite of the run writes the contract the advice priced."""
from __future__ import annotations

import pytest

from ccprof.advisors import advise_one
from ccprof.applier.codemods import apply_source
from ccprof.hardware import attach
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


def test_lbfgs_is_not_offered_a_larger_batch():
    r = run_script(SCRIPTS / "lbfgs.py", [], steps=3, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    a = advise_one("batch_size", attach(r.profile, gpu="a100-80gb"))
    assert a.status == "not_applicable" and "LBFGS" in a.rationale and "full-batch" in a.rationale


def test_the_batch_stops_at_the_training_set_and_the_rewrite_writes_the_contract():
    r = run_script(SCRIPTS / "small_dataset.py", [], steps=3, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    p = attach(r.profile, gpu="a100-80gb")
    assert p.data.dataset_len == 40 and p.cost.run_steps == 15         # 3 epochs x 40 / 8
    a = advise_one("batch_size", p)
    assert a.status == "recommended", a.rationale
    # the GPU could hold far more, and 8 x 8 = 64 is the usual cap: the 40 samples are the limit
    assert a.options == {"batch_size": 40, "keep": "samples", "lr_rule": "linear"}
    assert "capped at the training set's 40 samples" in a.rationale
    # same samples: 15 steps / 5 = 3 (3 epochs of one batch); SGD's lr x 5 (Goyal et al. 2017)
    assert a.details["run_steps_after"] == 3 and a.details["lr_after"] == pytest.approx(0.5)
    out = apply_source((SCRIPTS / "small_dataset.py").read_text(), ["batch_size"], tweak_options={"batch_size": a.options})
    assert '"--batch-size", type=int, default=40)' in out.source and '"--lr", type=float, default=0.5)' in out.source
    assert '"--epochs", type=int, default=3)' in out.source       # epochs kept: each has 5x fewer steps
