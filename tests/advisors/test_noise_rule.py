"""When a tweak is "recommended": only when its projected saving is above the projection's own
band and ccprof's 1% threshold; and how near-equal savings rank. Recorded numbers only."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, rank
from ccprof.advisors._common import make_advice
from ccprof.advisors.constants import MIN_SAVING_FRAC
from ccprof.artefacts.advice import Advice, Projected
from ccprof.artefacts.profile import GpuProjection
from tests.helpers.profiles import hand_profile


def _with_band(profile, lo: float, hi: float):
    """The hand profile ($10 run, 1 s step on a100-80gb) with a projection band around the step."""
    return replace(profile, projection={"a100-80gb": GpuProjection(step_s=1.0, step_s_lo=lo, step_s_hi=hi, fits=True)})


def _advice(profile, frac: float, memory: int = 0, ctx: AdviceContext | None = None) -> Advice:
    return make_advice("fused_optimizer", "recommended", profile, ctx or AdviceContext(), rationale="Because.",
                       snippet="x", time_saved_frac=frac, memory_saved_bytes=memory)


def test_a_saving_under_the_threshold_is_no_measurable_saving():
    p = _with_band(hand_profile(), 1.0, 1.0)             # all counted: no band
    small = _advice(p, MIN_SAVING_FRAC / 2)
    assert small.status == "no_saving"
    assert small.rationale.startswith("No measurable saving: 0.5% of the run's GPU cost, within ccprof's 1.0% threshold")
    assert small.projected.usd_saved == 0.0 and small.projected.time_saved_frac == 0.0
    assert small.details["no_saving"]["time_saved_frac"] == MIN_SAVING_FRAC / 2     # the figures are kept
    assert _advice(p, 0.05).status == "recommended"


def test_a_tweak_that_costs_time_is_never_recommended_for_it():
    p = _with_band(hand_profile(), 1.0, 1.0)
    slower = _advice(p, -0.06)
    assert slower.status == "no_saving" and slower.rationale.startswith("No saving: it would add 6.0% to the run's GPU cost")


def test_a_saving_inside_the_projections_band_is_no_measurable_saving():
    # the step is 1.0 s, 0.96 .. 1.05 s with the measured batch time's interval: a 5% band (the wider side)
    p = _with_band(hand_profile(), 0.96, 1.05)
    assert _advice(p, 0.03).status == "no_saving"
    kept = _advice(p, 0.08)
    assert kept.status == "recommended"
    assert kept.details["saving_band_frac"] == pytest.approx(0.05)


def test_memory_a_run_that_does_not_fit_needs_is_kept():
    # 2000 MB peak on a 2000 MB device: over 90%, so freeing memory is needed even at a time cost
    p = _with_band(hand_profile(), 1.0, 1.0)
    ctx = AdviceContext(device_memory_bytes=2000 * 10**6)
    assert _advice(p, -0.1, memory=500 * 10**6, ctx=ctx).status == "recommended"
    roomy = _advice(p, -0.1, memory=500 * 10**6)              # fits an 80 GB A100
    assert roomy.status == "no_saving" and "which this run does not need" in roomy.rationale


def _rec(tweak: str, expected: float, risk: str = "none", confidence: str = "medium", band: float = 0.0) -> Advice:
    return Advice(tweak, "recommended", projected=Projected(expected_frac=expected), risk=risk,
                  confidence=confidence, details={"saving_band_frac": band})


def test_savings_within_the_band_tie_and_break_by_a_fixed_rule():
    # 10.0% and 10.3% within a 1% band: tied, lower risk first; 20% clearly first
    ranked = rank([_rec("tf32", 0.103, "numerics", band=0.01), _rec("compile", 0.100, "none", band=0.01),
                   _rec("lora", 0.20, "accuracy"), Advice("pruning", "no_saving"), Advice("distributed", "not_applicable"),
                   Advice("finetune", "already_applied")])
    assert [a.tweak for a in ranked] == ["lora", "compile", "tf32", "pruning", "finetune", "distributed"]
    # without a band, savings within ccprof's 1% threshold tie too; beyond it the larger one wins
    assert [a.tweak for a in rank([_rec("compile", 0.100), _rec("tf32", 0.103, "numerics")])] == ["compile", "tf32"]
    assert [a.tweak for a in rank([_rec("compile", 0.100), _rec("tf32", 0.115, "numerics")])] == ["tf32", "compile"]
    # tied within a band, equal risks: higher confidence, then the id
    assert [a.tweak for a in rank([_rec("b_t", 0.1, confidence="low", band=0.01),
                                   _rec("a_t", 0.1, confidence="low", band=0.01),
                                   _rec("c_t", 0.105, confidence="high", band=0.01)])] == ["c_t", "a_t", "b_t"]
