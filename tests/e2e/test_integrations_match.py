"""The Trainer callbacks measure what ``ccprof analyze`` measures: the same script run under the
callback, in-process, and from outside, by the harness (a subprocess), gives the same FLOPs per
step, parameters and memory (repeated-run tolerances: counts equal, memory within 2%; never
timings), and every advisor says the same of both."""
from __future__ import annotations

import runpy

import pytest

from ccprof import api
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


def _same_measurement(live, outside) -> None:
    inside = live.raw
    assert inside.status == outside.status == "complete"
    assert inside.flops.per_step == outside.flops.per_step > 0
    assert inside.model.params == outside.model.params
    assert inside.model.trainable_params == outside.model.trainable_params
    assert inside.steps.samples_per_step == outside.steps.samples_per_step
    # the training DataLoader was seen made, inside as outside (its settings, the epoch's length)
    assert inside.data.dataloader_seen and outside.data.dataloader_seen
    assert (inside.data.num_workers, inside.data.steps_per_epoch) == (outside.data.num_workers, outside.data.steps_per_epoch)
    assert inside.memory.peak_bytes == pytest.approx(outside.memory.peak_bytes, rel=0.02)
    assert inside.memory.activations_bytes == pytest.approx(outside.memory.activations_bytes, rel=0.02)
    assert [o.class_ for o in inside.optimizer.optimizers] == [o.class_ for o in outside.optimizer.optimizers]
    # and the same verdict from every advisor, costed alike (the callback's GPU and planned steps)
    costed = api.attach_costs(outside, gpu=live.gpu, total_steps=live.total_steps)
    assert {a.tweak: a.status for a in live.advice.advice} == {a.tweak: a.status for a in api.advise(costed).advice}


def test_hf_callback_matches_an_outside_analysis(tmp_path):
    pytest.importorskip("transformers")
    from ccprof.integrations.hf import CcprofCallback

    cb = CcprofCallback(steps=3, warmup=1, out_dir=None, gpu="a100-80gb", total_steps=14)
    trainer = runpy.run_path(str(SCRIPTS / "hf_trainer_tiny.py"))["main"](out_dir=str(tmp_path / "in"),
                                                                          callbacks=[cb])
    assert trainer.state.global_step == trainer.args.max_steps
    outside = run_script(SCRIPTS / "hf_trainer_tiny.py", [str(tmp_path / "out")], steps=3, warmup=1, timeout_s=300)
    assert outside.exit_code == 0, outside.message
    _same_measurement(cb.result, outside.profile)


def test_lightning_callback_matches_an_outside_analysis(tmp_path):
    pytest.importorskip("lightning")
    from ccprof.integrations.lightning import CcprofCallback

    cb = CcprofCallback(steps=3, warmup=1, out_dir=None, gpu="a100-80gb", total_steps=14)
    trainer = runpy.run_path(str(SCRIPTS / "lightning_tiny.py"))["main"](root=str(tmp_path / "in"), callbacks=[cb])
    assert trainer.global_step == 14
    outside = run_script(SCRIPTS / "lightning_tiny.py", [str(tmp_path / "out")], steps=3, warmup=1, timeout_s=300)
    assert outside.exit_code == 0, outside.message
    _same_measurement(cb.result, outside.profile)
