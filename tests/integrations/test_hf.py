"""``ccprof.integrations.hf.CcprofCallback`` inside a real transformers ``Trainer`` (a tiny GPT-2
built from a config, an in-memory dataset, on the CPU): the training runs all its steps, the
report is written, and the headline figures reach the Trainer's loggers."""
from __future__ import annotations

import json
import runpy
import sys

import pytest

from tests.helpers.paths import SCRIPTS

pytest.importorskip("transformers")
from ccprof.integrations.hf import CcprofCallback  # noqa: E402

MAX_STEPS = 14


def test_the_trainer_trains_on_and_its_tensorboard_log_gets_the_figures(tmp_path):
    pytest.importorskip("tensorboard")
    main = runpy.run_path(str(SCRIPTS / "hf_trainer_tiny.py"))["main"]
    cb = CcprofCallback(steps=3, warmup=1, out_dir=tmp_path / "report", gpu="a100-80gb")
    trainer = main(out_dir=str(tmp_path / "run"), max_steps=MAX_STEPS, callbacks=[cb], report_to=["tensorboard"])
    assert trainer.state.global_step == MAX_STEPS       # the profiler detached; training went on
    p = cb.result.profile
    assert p.status == "complete" and len(p.steps.step_s) >= 3
    assert p.cost.gpu == "a100-80gb" and p.cost.run_steps == MAX_STEPS     # the Trainer's max_steps
    saved = json.loads((tmp_path / "report" / "profile.json").read_text())
    assert saved["flops"]["per_step"] == p.flops.per_step > 0
    assert (tmp_path / "report" / "advice.json").is_file() and (tmp_path / "report" / "report.html").is_file()
    figures = cb.figures
    assert figures["ccprof/step_s"] == p.cost.step_s and figures["ccprof/peak_bytes"] == p.memory.peak_bytes
    assert {"ccprof/usd_per_step", "ccprof/mfu"} <= set(figures)
    logged = [h for h in trainer.state.log_history if "ccprof/step_s" in h]
    assert len(logged) == 1 and logged[0]["step"] < MAX_STEPS         # logged when measured, mid-run
    events = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert events and any(b"ccprof/step_s" in e.read_bytes() for e in events)


def test_a_run_that_raised_leaves_a_partial_profile_and_the_next_run_is_measured(tmp_path):
    from transformers import TrainerCallback

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("the user's callback failed")

    main = runpy.run_path(str(SCRIPTS / "hf_trainer_tiny.py"))["main"]
    cb = CcprofCallback(steps=2, warmup=1, out_dir=None)
    with pytest.raises(RuntimeError):
        main(out_dir=str(tmp_path / "a"), max_steps=4, callbacks=[cb, Boom()])
    first = cb.result
    trainer = main(out_dir=str(tmp_path / "b"), max_steps=10, callbacks=[cb])
    assert first.raw.status == "partial" and "previous run stopped" in first.raw.error.message
    assert cb.result is not first and cb.result.raw.status == "complete"
    assert trainer.state.global_step == 10


def test_a_missing_transformers_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "ccprof.integrations.hf")
    with pytest.raises(ImportError) as err:
        import ccprof.integrations.hf  # noqa: F401
    assert str(err.value) == ("ccprof.integrations.hf needs transformers, which is not installed: "
                              "pip install 'ccprof[hf]'")
