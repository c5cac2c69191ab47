"""``ccprof.integrations.lightning.CcprofCallback`` inside a real Lightning ``Trainer`` (a tiny
LightningModule, accelerator="cpu"): the training runs all its steps, the report is written, and
the headline figures reach the Trainer's loggers."""
from __future__ import annotations

import csv
import runpy
import sys

import pytest

from tests.helpers.paths import SCRIPTS

pytest.importorskip("lightning")
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from ccprof.integrations.lightning import CcprofCallback  # noqa: E402

MAX_STEPS = 14


def test_the_trainer_trains_on_and_its_logger_gets_the_figures(tmp_path):
    main = runpy.run_path(str(SCRIPTS / "lightning_tiny.py"))["main"]
    cb = CcprofCallback(steps=3, warmup=1, out_dir=tmp_path / "report", gpu="a100-80gb")
    trainer = main(root=str(tmp_path / "run"), max_steps=MAX_STEPS, callbacks=[cb],
                   logger=CSVLogger(str(tmp_path / "run")))
    assert trainer.global_step == MAX_STEPS
    p = cb.result.profile
    assert p.status == "complete" and len(p.steps.step_s) >= 3
    assert p.cost.run_steps == MAX_STEPS                 # the Trainer's estimated stepping batches
    assert sorted(f.name for f in (tmp_path / "report").iterdir()) >= ["advice.json", "profile.json", "report.html"]
    rows = [r for r in csv.DictReader(next((tmp_path / "run").rglob("metrics.csv")).open())
            if r.get("ccprof/step_s")]
    assert len(rows) == 1 and float(rows[0]["ccprof/step_s"]) == pytest.approx(p.cost.step_s)
    assert int(rows[0]["step"]) < MAX_STEPS


def test_a_missing_lightning_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning.pytorch.callbacks", None)
    monkeypatch.delitem(sys.modules, "ccprof.integrations.lightning")
    with pytest.raises(ImportError) as err:
        import ccprof.integrations.lightning  # noqa: F401
    assert str(err.value) == ("ccprof.integrations.lightning needs lightning, which is not installed: "
                              "pip install 'ccprof[lightning]'")
