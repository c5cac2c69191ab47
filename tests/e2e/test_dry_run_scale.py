"""--dry-run at a size this machine would not train for real, against closed-form counts
(tests/helpers/llama_math.py), and its parity with a real run on a model small enough for both.

The full-size figures (Llama-3-8B and -70B shapes, wall time and RSS) are bench/dry_run_scale.py's.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ccprof.profiler.runner import run_script
from tests.helpers.llama_math import (
    LlamaShape,
    activation_bytes_bf16,
    flops_narayanan,
    flops_torch_counter,
    params,
    peak_bytes_bf16_adamw,
)
from tests.helpers.paths import ROOT, SCRIPTS

# 1.0B parameters in 8 wide layers (a dry run's time grows with the ops it runs, not with their
# sizes: 8 layers run a quarter of the 8B bench's ops); 8 GB of bf16 AdamW state
MID = LlamaShape(hidden=3072, intermediate=8192, layers=8, heads=24, kv_heads=8, vocab=32000)
MID_BATCH, MID_SEQ = 1, 1024
TINY = LlamaShape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=256)


def _loop_args(shape: LlamaShape, batch: int, seq: int) -> list[str]:
    return [*shape.args(), "--batch", str(batch), "--seq", str(seq), "--dtype", "bfloat16"]


def test_a_billion_parameter_llama_dry_runs_with_the_closed_form_counts(tmp_path):
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPTS / "llama_loop.py"), "--dry-run",
                        "--steps", "1", "--warmup", "1", "--gpu", "h100-sxm", "--out", str(out), "-q", "--",
                        *_loop_args(MID, MID_BATCH, MID_SEQ)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    prof = json.loads((out / "profile.json").read_text())
    n = params(MID)
    # embeddings and lm_head 2 x 32000 x 3072, 8 layers of 100,669,440 (q, o 3072^2; k, v 3072 x 1024;
    # gate, up, down 3072 x 8192; 2 norms of 3072), the final norm 3072
    assert prof["model"]["params"] == n == 1_001_966_592
    flops = prof["flops"]["per_step"]
    # torch.utils.flop_counter's convention exactly; Narayanan et al. 2021's 3 x forward within 3%
    # (the flash-attention backward is counted as 2.5 x its forward, not 2 x)
    assert flops == flops_torch_counter(MID, MID_BATCH, MID_SEQ)
    assert flops == pytest.approx(flops_narayanan(MID, MID_BATCH, MID_SEQ), rel=0.03)
    mem = prof["memory"]
    # bf16: parameters, gradients 2 bytes each; AdamW's two moments 4 bytes (+ a 4-byte step per tensor)
    n_tensors = 2 + MID.layers * 9 + 1
    assert mem["params_bytes"] == mem["grads_bytes"] == 2 * n
    assert mem["optimizer_state_bytes"] == 4 * n + 4 * n_tensors
    assert mem["peak_bytes"] >= 8 * n                        # params + grads + 2 x params for the moments
    assert mem["activations_bytes"] == pytest.approx(activation_bytes_bf16(MID, MID_BATCH, MID_SEQ), rel=0.05)
    assert mem["peak_bytes"] == pytest.approx(peak_bytes_bf16_adamw(MID, MID_BATCH, MID_SEQ), rel=0.05)
    assert prof["dry_run"]["stand_ins"][0]["line"] > 0     # loss.item() in the print


def _op_rows(profile) -> list[tuple]:
    return sorted((o.op, o.phase, o.dtype, json.dumps(o.shapes), json.dumps(o.out_shapes), o.scope, o.count,
                   o.flops, o.bytes_read, o.bytes_written) for o in profile.ops)


def test_dry_run_records_what_a_real_run_records():
    """A model small enough to train here, analyzed both ways: the same ops, FLOPs and ledger.

    Equal op rows hold although a GPU dry run takes CUDA's fused RMSNorm (dryrun_cuda.FAST_PATHS):
    Hugging Face's LlamaRMSNorm writes the norm out (to fp32, pow, mean, rsqrt, mul) and never calls
    F.rms_norm, so it decomposes on CUDA as here. tests/e2e/test_bench_titan_world.py has nn.RMSNorm."""
    args = _loop_args(TINY, 2, 32)
    real = run_script(SCRIPTS / "llama_loop.py", args, steps=3, warmup=1, timeout_s=300)
    dry = run_script(SCRIPTS / "llama_loop.py", args, steps=3, warmup=1, timeout_s=300, dry_run=True)
    assert real.exit_code == dry.exit_code == 0, (real.message, dry.message)
    assert real.profile.dry_run is None and dry.profile.dry_run is not None
    assert _op_rows(dry.profile) == _op_rows(real.profile) and len(real.profile.ops) > 100
    assert dry.profile.flops.per_step == real.profile.flops.per_step == flops_torch_counter(TINY, 2, 32)
    for field in ("peak_bytes", "params_bytes", "grads_bytes", "optimizer_state_bytes", "activations_bytes",
                  "other_bytes", "buffers_bytes"):
        assert getattr(dry.profile.memory, field) == pytest.approx(getattr(real.profile.memory, field), rel=0.01), field
    # the host work the cost model prices is the script's Python, not the fake tensors' own: the
    # bytecodes each phase counts, and so the projected step, are the real run's
    for phase in ("forward", "backward", "optimizer"):
        assert dry.profile.host.opcodes[phase] == pytest.approx(real.profile.host.opcodes[phase], rel=0.05), phase
    from ccprof.hardware import attach
    step = {name: attach(r.profile, gpu="a100-80gb").projection["a100-80gb"].step_s
            for name, r in (("real", real), ("dry", dry))}
    assert step["dry"] == pytest.approx(step["real"], rel=0.02)
