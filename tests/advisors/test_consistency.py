"""The advice-set checker: shared facts stated alike, and "recommended" only with a positive saving.
Hand-made advice for each kind of contradiction; the real advisors on the tiny models' profiles,
priced, unpriced and on a run too short for its one-time costs, for none."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise
from ccprof.advisors._common import fp32_matmul_flops
from ccprof.advisors.consistency import contradictions, facts_of
from ccprof.artefacts.advice import Advice, Projected
from tests.helpers.profiles import cnn_plain, gpt_plain, hand_profile, llama_plain, priced


def _rec(tweak: str, **kw) -> Advice:
    details = {"gpu": "a100-80gb", "priced": True, "time_scope": "step", **kw.pop("details", {})}
    return Advice(tweak, kw.pop("status", "recommended"), details=details,
                  projected=Projected(**{"time_saved_frac": 0.1, "usd_saved": 1.0, "cost_saved_frac": 0.1, **kw}),
                  rationale=details.pop("rationale", "Because."))


def test_a_fact_two_advisors_state_differently_is_a_contradiction():
    # tf32 said "no fp32 matmuls weigh on the step" (0) where mixed_precision said 100% of the FLOPs
    p = hand_profile()
    _, frac = fp32_matmul_flops(p)
    # its fp32 mm ops: 3 x 2 x 2048 x 2828^2 x 10 = 9.8274e11 of the 1e12 FLOPs per step
    assert frac == pytest.approx(3 * 2 * 2048 * 2828**2 * 10 / 1e12)
    tf32 = _rec("tf32", status="no_saving", details={"facts": {"fp32_matmul_flops_frac": 0.0}})
    mp = _rec("mixed_precision", details={"fp32_matmul_flops_frac": frac})      # the older top-level key
    assert facts_of(mp) == {"fp32_matmul_flops_frac": frac}
    assert contradictions([tf32, mp], p) == ["fp32_matmul_flops_frac: tf32 states 0, mixed_precision states 0.982743",
                                             "fp32_matmul_flops_frac: tf32 states 0, the profile measures 0.982743"]
    assert contradictions([replace(tf32, details={**tf32.details, "facts": {"fp32_matmul_flops_frac": frac}}), mp], p) == []


def test_the_step_on_a_gpu_is_one_fact_per_gpu():
    a = _rec("compile", details={"step_s_before_model": 0.010})
    b = _rec("pruning", details={"facts": {"step_s_model": 0.012}})
    c = _rec("tf32", details={"gpu": "h100-sxm", "step_s_before_model": 0.007})    # another GPU: not compared
    assert contradictions([a, b, c], hand_profile()) == ["step_s_model on a100-80gb: compile states 0.01, pruning states 0.012"]


@pytest.mark.parametrize("advice, says", [
    (_rec("quantization", usd_saved=0.0, time_saved_frac=0.0, memory_saved_bytes=1_478_000),
     "quantization: recommended, but its projected saving is $0 for the planned run"),
    (_rec("compile", usd_saved=-0.2, details={"priced": False}, cost_saved_frac=-0.02),
     "compile: recommended, but it saves -0.02 of the run's cost (time 0.1, memory 0 bytes)"),
    (_rec("distillation", details={"rationale": "A student ...: no change in time per step; ..."}),
     "distillation: recommended for 0.1 of the step, but its rationale says 'no change in time per step'"),
    (_rec("tf32", details={"rationale": "No measurable saving: 0.5% of the run's GPU cost"}),
     "tf32: recommended, but its rationale opens 'No measurable saving: 0.5% of the run's GPU cost'"),
    (_rec("checkpointing", memory_saved_bytes=0, usd_saved=-1.0, details={"memory_needed": True}),
     "checkpointing: recommended for memory the run needs, but frees 0 bytes"),
])
def test_recommended_without_a_saving_is_a_contradiction(advice, says):
    assert contradictions([advice], hand_profile()) == [says]


def test_memory_a_run_needs_may_cost_time():
    ok = _rec("checkpointing", usd_saved=-1.0, cost_saved_frac=-0.1, memory_saved_bytes=10**8,
              details={"memory_needed": True, "rationale": "Recommended for memory, not money: ..."})
    assert contradictions([ok], hand_profile()) == []


@pytest.mark.parametrize("build", [llama_plain, gpt_plain, cnn_plain])
def test_the_advisors_agree_on_the_tiny_models(build):
    p = build()
    for q, ctx in ((p, AdviceContext()),                                  # unpriced: time and memory only
                   (priced(p), AdviceContext()),                          # 10,000 steps on an A100
                   (priced(p, total_steps=100), AdviceContext()),         # shorter than compiling it
                   (priced(p), AdviceContext(device_memory_bytes=p.memory.peak_bytes))):   # memory is short
        assert contradictions(advise(q, ctx), q) == []
