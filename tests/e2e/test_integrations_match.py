"""The Trainer callbacks measure what ``ccprof analyze`` measures: the same script run under the
callback, in-process, and from outside, by the harness (a subprocess), gives the same FLOPs per
step, parameters and memory (repeated-run tolerances: counts equal, memory within 2%; never
timings)."""
from __future__ import annotations

import runpy

import pytest

from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


def _same_measurement(inside, outside) -> None:
    assert inside.status == outside.status == "complete"
    assert inside.flops.per_step == outside.flops.per_step > 0
    assert inside.model.params == outside.model.params
    assert inside.model.trainable_params == outside.model.trainable_params
    assert inside.steps.samples_per_step == outside.steps.samples_per_step
    assert inside.memory.peak_bytes == pytest.approx(outside.memory.peak_bytes, rel=0.02)
    assert inside.memory.activations_bytes == pytest.approx(outside.memory.activations_bytes, rel=0.02)
    assert [o.class_ for o in inside.optimizer.optimizers] == [o.class_ for o in outside.optimizer.optimizers]


def test_hf_callback_matches_an_outside_analysis(tmp_path):
    pytest.importorskip("transformers")
    from ccprof.integrations.hf import CcprofCallback

    cb = CcprofCallback(steps=3, warmup=1, out_dir=None)
    trainer = runpy.run_path(str(SCRIPTS / "hf_trainer_tiny.py"))["main"](out_dir=str(tmp_path / "in"),
                                                                          callbacks=[cb])
    assert trainer.state.global_step == trainer.args.max_steps
    outside = run_script(SCRIPTS / "hf_trainer_tiny.py", [str(tmp_path / "out")], steps=3, warmup=1, timeout_s=300)
    assert outside.exit_code == 0, outside.message
    _same_measurement(cb.result.raw, outside.profile)


def test_lightning_callback_matches_an_outside_analysis(tmp_path):
    pytest.importorskip("lightning")
    from ccprof.integrations.lightning import CcprofCallback

    cb = CcprofCallback(steps=3, warmup=1, out_dir=None)
    trainer = runpy.run_path(str(SCRIPTS / "lightning_tiny.py"))["main"](root=str(tmp_path / "in"), callbacks=[cb])
    assert trainer.global_step == 14
    outside = run_script(SCRIPTS / "lightning_tiny.py", [str(tmp_path / "out")], steps=3, warmup=1, timeout_s=300)
    assert outside.exit_code == 0, outside.message
    _same_measurement(cb.result.raw, outside.profile)
