"""Issue 20: each advisor checks its preconditions in the script and the model, through the one
reader of the script. One small script per defect users found (tests/scripts/), run for real."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors._common import ledger, recost
from ccprof.hardware import attach, cost_step, load_catalog, policy_for
from ccprof.hardware.edits import to_float32
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS

CTX = AdviceContext(gpu="a100-80gb")


def _run(name: str, *argv: str):
    r = run_script(SCRIPTS / name, list(argv), steps=3, warmup=1, timeout_s=180)
    assert r.exit_code == 0, r.message
    return attach(r.profile, gpu="a100-80gb")


@pytest.mark.parametrize("style,line,code", [("signature", 22, "fused=use_fused"),
                                             ("available", 24, "fused=torch.cuda.is_available()")])
def test_fused_only_on_cuda_is_already_applied_on_the_target_gpu(style, line, code):
    """fused_optimizer recommended 'foreach kernels' on a CPU run of `fused=use_fused`: the CPU branch."""
    p = _run("fused_on_cuda.py", "--style", style)
    assert p.device.type == "cpu" and p.optimizer.optimizers[0].fused is False     # the host's branch
    a = advise_one("fused_optimizer", p, CTX)
    assert a.status == "already_applied"
    assert a.rationale.startswith(f"Already applied on CUDA (line {line}: `AdamW(..., {code})`)")
    # the cost model's baseline is the GPU's branch: fused, for every advice's 'before'
    spec = load_catalog()["a100-80gb"]
    assert policy_for(p, spec).optimizer == "fused"
    assert p.cost.step_s == pytest.approx(cost_step(p, spec).step_s)
    rc = recost(p, CTX, policy={"optimizer": "foreach"})
    assert rc.before.phase_s["optimizer"] < rc.after.phase_s["optimizer"]          # fused beats foreach


def test_float64_model_gets_the_real_lever_with_sane_memory():
    """mixed_precision on a float64 model: autocast leaves float64 alone; the line that makes it
    float64 is named and float64 -> float32 -> autocast is costed."""
    p = _run("float64_model.py", "--style", "double")
    assert p.precision.param_dtype == "float64" and p.static.lines["float64"] == 23
    a = advise_one("mixed_precision", p, CTX)
    assert a.status == "recommended" and a.risk == "numerics"
    assert "made so by `model.double()` at line 23" in a.rationale
    alone = recost(p, CTX, policy={"autocast": "bfloat16"})
    assert alone.after.step_s == pytest.approx(alone.before.step_s)                # autocast alone: nothing
    lever = recost(p, CTX, ops=to_float32(p.ops), policy={"autocast": "bfloat16"})
    assert a.projected.time_saved_frac == pytest.approx(lever.frac) and lever.frac > 0
    led = ledger(p)
    assert 0 < a.projected.peak_bytes_after < led.peak
    assert a.details["activations_after_bytes"] <= a.projected.peak_bytes_after


def test_lbfgs_closure_backwards_are_not_accumulation():
    """grad_accumulation said 'already applied' on LBFGS: the closure's re-evaluations are not micro-batches."""
    p = _run("lbfgs.py")
    assert p.steps.micro_batches == 1 and p.steps.closure_backwards >= 2 and not p.static.accumulation
    a = advise_one("grad_accumulation", p, CTX)
    assert a.status == "not_applicable"
    assert "inside LBFGS.step(closure)" in a.rationale and "not micro-batches" in a.rationale
    # a profile that says so without the run's count (an older profile) still answers by the class
    old = replace(p, steps=replace(p.steps, closure_backwards=0))
    assert advise_one("grad_accumulation", old, CTX).status == "not_applicable"
