"""`ccprof analyze` on a data-bound script: the projected GPU step is the DataLoader's wait, and
the dataloader tweak is recommended for it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.paths import ROOT


@pytest.mark.slow
def test_a_data_bound_script_waits_for_data_on_the_gpu(tmp_path):
    """A CNN whose Dataset spends 100 ms per batch (num_workers=0), profiled on this CPU: on an
    A100 the GPU would wait ~100 ms a step for a few hundred microseconds of compute."""
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(ROOT / "tests" / "scripts" / "data_bound.py"),
                           "--quiet", "--steps", "3", "--warmup", "1", "--gpu", "a100-80gb", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prof = json.loads((tmp_path / "profile.json").read_text())
    proj = prof["projection"]["a100-80gb"]
    # the sleep is time off the CPU (I/O, as a disk read would be), kept apart from the CPU time
    assert prof["data"]["batch_io_s"] + prof["data"]["batch_s"] >= 0.1 and prof["data"]["batch_s"] < 0.05
    assert proj["phase_s"]["data"] >= 0.1
    assert proj["phase_s"]["data"] > 0.9 * proj["step_s"]     # the loader is the step
    assert sum(proj["phase_s"].values()) == pytest.approx(proj["step_s"])
    adv = {a["tweak"]: a for a in json.loads((tmp_path / "advice.json").read_text())["advice"]}
    dl = adv["dataloader"]
    assert dl["status"] == "recommended"
    d = dl["details"]
    assert dl["projected"]["time_saved_frac"] == pytest.approx(1 - d["step_s_after_model"] / d["step_s_before_model"],
                                                               abs=1e-5)
    assert dl["projected"]["time_saved_frac"] > 0.3
