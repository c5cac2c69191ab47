"""--verify on a real script: tweaks applied to the live run in a fresh process, measured."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccprof.advisors.advice import Advice, AdviceSet, Plan, Projected
from ccprof.applier.verify import VERIFY_SEED, pick_tweaks, verify
from ccprof.profiler.runner import run_script

ROOT = Path(__file__).resolve().parents[1]
GPT = ROOT / "examples" / "gpt_loop.py"
ARGS = ["--n-layer", "4", "--batch-size", "8"]
PLAN = dict(steps=3, warmup=1, timeout_s=240, seed=VERIFY_SEED)


@pytest.fixture(scope="module")
def baseline():
    r = run_script(GPT, ARGS, **PLAN)
    assert r.exit_code == 0, r.message
    return r.profile


def run_one(tweaks, options):
    return run_script(GPT, ARGS, tweak=tweaks, tweak_options=options, **PLAN).profile


def test_checkpointing_measured_against_projection(baseline):
    peak = baseline.memory.peak_bytes
    advice = AdviceSet(advice=[
        Advice("checkpointing", status="recommended",
               projected=Projected(time_saved_frac=-0.2, memory_saved_bytes=1, peak_bytes_after=peak - 1)),
        Advice("finetune", status="recommended"),              # not applicable at run time: skipped
    ])
    assert pick_tweaks(advice, 3) == ["checkpointing"]
    out = verify(run_one, baseline, advice, k=3)
    m = out.by_tweak()["checkpointing"].measured
    assert m is not None and m.peak_bytes and m.step_s
    # recomputation keeps only block boundaries: the activations of 4 blocks mostly go
    assert m.memory_saved_bytes > 0
    assert m.peak_bytes < peak
    assert m.memory_error_frac == pytest.approx((peak - 1 - m.peak_bytes) / m.peak_bytes)
    # same seed, same data: the loss is the same to float rounding, and the guard agrees
    assert abs(m.loss_delta) < 1e-3 and not m.harmful
    assert "CPU" in m.note and m.usd_saved is None
    assert out.by_tweak()["finetune"].measured is None


def test_same_seed_baseline_is_reproducible(baseline):
    again = run_script(GPT, ARGS, **PLAN).profile
    assert again.steps.loss == pytest.approx(baseline.steps.loss, abs=1e-5)
    assert again.memory.peak_bytes == baseline.memory.peak_bytes


def test_plan_runs_all_runtime_tweaks_once(baseline):
    advice = AdviceSet(
        advice=[Advice("mixed_precision", status="recommended"), Advice("checkpointing", status="recommended")],
        plan=Plan(tweaks=["mixed_precision", "checkpointing", "right_size_gpu"], step_s_before=1.0,
                  step_s_after=0.5, peak_bytes_before=baseline.memory.peak_bytes,
                  peak_bytes_after=baseline.memory.peak_bytes // 2))
    out = verify(run_one, baseline, advice, plan=True)
    m = out.plan.measured
    assert m is not None and m.peak_bytes
    assert "right_size_gpu" in m.note                          # said, not silently dropped
    assert m.time_error_frac == pytest.approx(0.5 - m.time_saved_frac)


@pytest.mark.slow
def test_cli_verify_writes_measured_into_advice_json(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(GPT), "--quiet", "--steps", "3",
                           "--warmup", "1", "--verify", "1", "--out", str(tmp_path), "--", *ARGS],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "advice.json").read_text())
    measured = [a for a in data["advice"] if a.get("measured")]
    assert len(measured) == 1
    assert measured[0]["measured"]["peak_bytes"] > 0


def test_bad_verify_value_is_usage_error():
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(GPT), "--verify", "lots"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--verify takes" in proc.stderr
