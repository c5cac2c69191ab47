"""Each example runs plainly (no ccprof), exits 0 and its training loss goes down."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import EXAMPLES

LOSS = re.compile(r"step (\d+): loss ([0-9.]+)")   # "val loss" lines do not match

# example -> a short run's flags
RUNS = {
    "gpt_loop.py": ["--steps", "60", "--eval-every", "30"],
    "hf_trainer.py": ["--steps", "80", "--logging-steps", "10", "--eval-steps", "40"],
    "cnn.py": ["--epochs", "2", "--train-size", "1600", "--log-every", "10"],
    "finetune.py": ["--steps", "60"],
}


def run_example(name: str, args: list[str], cwd: Path) -> list[float]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, capture_output=True, text=True, timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # the 2 CPU cores are shared by the suite
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return [float(loss) for _, loss in LOSS.findall(proc.stdout)]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_example_trains(name, tmp_path):
    args = RUNS[name]
    if name == "finetune.py":
        args = [*args, "--checkpoint", str(tmp_path / "backbone.pt")]
    losses = run_example(name, args, cwd=tmp_path)
    assert len(losses) >= 3, f"{name} printed too few loss lines: {losses}"
    # the last logged losses sit well below the first one
    assert max(losses[-2:]) < 0.8 * losses[0], losses
    if name == "finetune.py":
        assert (tmp_path / "backbone.pt").exists()


def test_every_example_has_a_short_run():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(RUNS)
