"""bench/scale/titan_fsdp.py (torchtitan's Llama under FSDP2 with its selective-op activation
checkpointing, the loop bench/scale_accuracy.py dry-runs at 8 and 64 ranks) at a tiny size: a real
2-rank gloo run and its dry run hold the same per-rank memory, FLOPs and collectives."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.paths import ROOT

SCRIPT = ROOT / "bench" / "scale" / "titan_fsdp.py"
TINY = ["--layers", "2", "--hidden", "128", "--intermediate", "344", "--heads", "4", "--kv-heads", "2",
        "--vocab", "512", "--seq", "64", "--batch", "2", "--ac", "selective-op", "--steps", "6"]


def _analyze(tmp_path, name, norm, *extra):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--nproc", "2", "--steps", "2",
                           "--warmup", "1", "--gpu", "h100-sxm", "--out", str(out), "-q", *extra, "--", *TINY,
                           "--norm", norm],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "profile.json").read_text())


def _collectives(profile):
    return sorted((o["op"], o["phase"], o["count"], o["attrs"]["bytes"], o["attrs"]["group"])
                  for o in profile["ops"] if o["op"].startswith("c10d."))


@pytest.mark.parametrize("norm", ["rmsnorm", "fused_rmsnorm"])
def test_the_titan_loop_dry_runs_as_its_real_ranks_do(tmp_path, norm):
    real = _analyze(tmp_path, "real", norm)
    dry = _analyze(tmp_path, "dry", norm, "--dry-run")
    for key in ("params_bytes", "grads_bytes", "optimizer_state_bytes"):
        assert dry["memory"][key] == real["memory"][key], key
    fused = {o["op"] for o in dry["ops"] if "_fused_rms_norm" in o["op"]}
    assert not any("_fused_rms_norm" in o["op"] for o in real["ops"])
    if norm == "rmsnorm":
        # torchtitan's Python RMSNorm writes the math out: it decomposes on CUDA as on this CPU. At this
        # size the real run peaked 248,320 B higher (6,184,796 B against 5,936,476 B, 4.0%), a difference
        # not traced to its source; from one run to the next the real peak moves by 182,784 B (2 ranks on
        # gloo: 6,002,012 B and 6,184,796 B with fused_rmsnorm)
        assert not fused
        assert dry["memory"]["peak_bytes"] == pytest.approx(real["memory"]["peak_bytes"], rel=0.05)
    else:
        # The norms differ, and on purpose: the dry run targets CUDA, where torch runs nn.RMSNorm with a
        # bf16 input and a bf16 weight (FSDP2's param_dtype) as one fused kernel, aten._fused_rms_norm,
        # that saves the bf16 input and an fp32 rstd; this CPU decomposes it and saves fp32 copies
        # (ccprof.profiler.dryrun_cuda.FAST_PATHS). Only the final norm is outside the checkpointed blocks:
        # the composite saves the fp32 input and the fp32 normalized input (8nh) and the rsqrt (4n), the
        # fused kernel the bf16 input (2nh) and rstd (4n): 6nh fewer bytes (n = 2 x 64 tokens, h = 128).
        assert fused == {"aten._fused_rms_norm", "aten._fused_rms_norm_backward"}
        n, h = 2 * 64, 128
        assert dry["memory"]["activations_bytes"] == real["memory"]["activations_bytes"] - 6 * n * h   # 98,304 B
        # The peak is lower by those 6nh and by the composite's fp32 backward temporaries: 14nh (229,376 B)
        # in all, measured against this dry run with the norm decomposed as the CPU does (6,002,012 B,
        # which the real run's peak equals or exceeds by 182,784 B from one run to the next).
        assert dry["memory"]["peak_bytes"] + 14 * n * h == pytest.approx(real["memory"]["peak_bytes"], rel=0.05)
    assert dry["flops"]["per_step"] == real["flops"]["per_step"]
    assert _collectives(dry) == _collectives(real) and _collectives(dry)
    # rank 0 keeps half of every fp32 parameter (FSDP2's shard), all of them counted once
    assert real["memory"]["params_bytes"] * 2 == real["model"]["params"] * 4
