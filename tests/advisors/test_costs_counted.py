""""recommended" means it saves money, all costs counted: a tweak's one-time cost (compiling, a
teacher's training, a fine-tune) is subtracted from the run's saving before the gate, and memory
counts only where it changes what the run needs. Hand profiles: $10 for 10,000 steps of 1 s on an
A100 80GB at $3.60/h (tests/helpers/profiles.hand_profile)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext
from ccprof.advisors._common import OneTimeCost, make_advice
from ccprof.artefacts.profile import Cost, GpuProjection
from tests.helpers.profiles import hand_profile

MB = 10**6


def _flat(profile):
    """No projection band: the 1% threshold is the gate."""
    return replace(profile, projection={"a100-80gb": GpuProjection(step_s=1.0, step_s_lo=1.0, step_s_hi=1.0, fits=True)})


def _advice(profile, frac=0.0, memory=0, one_time=None, ctx=None):
    return make_advice("compile", "recommended", profile, ctx or AdviceContext(), rationale="Because.", snippet="x",
                       time_saved_frac=frac, memory_saved_bytes=memory, one_time=one_time)


def test_a_one_time_cost_larger_than_the_runs_saving_is_no_saving():
    # 5% of a 10,000 s run saves 500 s = $0.50; compiling for 600 s costs $0.60: net -1% of the run
    a = _advice(_flat(hand_profile()), 0.05, one_time=OneTimeCost("compiling the model", "a stated model", s=600))
    assert a.status == "no_saving"
    assert a.rationale.startswith("No saving once its one-time cost is counted: it saves 5.0% of the run's GPU "
                                  "cost ($0.50) but costs 6.0% of it once ($0.60): net -1.0%")
    assert a.details["one_time"]["usd"] == pytest.approx(0.60)
    assert a.details["no_saving"]["one_time_frac"] == pytest.approx(0.06)
    assert a.projected.usd_saved == 0 and a.projected.cost_saved_frac == 0


def test_a_one_time_cost_smaller_than_the_saving_is_subtracted():
    # 60 s = $0.06 of the $0.50 saved: $0.44 net, 4.4% of the run
    a = _advice(_flat(hand_profile()), 0.05, one_time=OneTimeCost("compiling the model", "a stated model", s=60))
    assert a.status == "recommended"
    assert a.projected.usd_saved == pytest.approx(0.44)
    assert a.projected.cost_saved_frac == pytest.approx(0.044)
    assert a.projected.time_saved_frac == pytest.approx(0.05)          # the step itself still saves 5%
    assert ("One-time cost, subtracted from the saving: compiling the model (~60.0 s on a100-80gb, $0.060; a stated "
            "model). Net of it: 4.4% of the run's GPU cost ($0.44).") in a.rationale


def test_with_an_unknown_run_size_the_rationale_says_when_it_pays_back():
    p = _flat(hand_profile(cost=Cost(gpu="a100-80gb", usd_per_hour=3.6, step_s=1.0, run_steps=0, usd_run=0.0)))
    a = _advice(p, 0.05, one_time=OneTimeCost("compiling the model", "a stated model", s=600))
    # 600 s / (1 s x 5% saved per step) = 12,000 steps
    assert a.status == "recommended" and a.details["one_time"]["break_even_steps"] == 12_000
    assert "not subtracted because the planned run's size is unknown" in a.rationale
    assert "pays back after 12,000 steps, and a shorter run costs more than it saves" in a.rationale


def test_a_one_time_share_of_the_run_counts_without_a_run_size():
    # a fine-tune of a quarter of the run outweighs a 20% step saving (net -5%) with or without a size
    p = _flat(hand_profile(cost=Cost(gpu="a100-80gb", usd_per_hour=3.6, step_s=1.0, run_steps=0, usd_run=0.0)))
    a = _advice(p, 0.20, one_time=OneTimeCost("a fine-tune", "a paper", run_frac=0.25))
    assert a.status == "no_saving" and "net -5.0%" in a.rationale


def test_memory_a_run_that_fits_does_not_need_is_no_saving():
    a = _advice(_flat(hand_profile()), memory=1_478_000)
    assert a.status == "no_saving" and "which this run does not need" in a.rationale


def test_a_sliver_of_memory_on_a_run_that_does_not_fit_is_no_saving():
    # 2000 MB peak on a 2000 MB device (1800 MB usable): 1.41 MiB is 0.07% of the peak (0.1% as printed) and leaves it over
    ctx = AdviceContext(device_memory_bytes=2000 * MB)
    a = _advice(_flat(hand_profile()), memory=1_478_000, ctx=ctx)
    assert a.status == "no_saving"
    assert ("it frees 1.41 MiB, 0.1% of the 1.86 GiB peak: the run still does not fit the 1.68 GiB usable on the "
            "target GPU") in a.rationale


def test_memory_that_makes_the_run_fit_or_is_a_real_part_of_the_gap_is_kept():
    ctx = AdviceContext(device_memory_bytes=2000 * MB)
    fits = _advice(_flat(hand_profile()), -0.1, memory=300 * MB, ctx=ctx)        # 1700 MB <= 1800 MB
    assert fits.status == "recommended" and fits.details["memory_needed"] is True
    assert fits.rationale.startswith("Recommended for memory, not money: the 1.86 GiB peak does not fit the 1.68 GiB "
                                     "usable on the target GPU, and freeing 286 MiB (peak 1.58 GiB) brings the run "
                                     "under it; its cost is 10% of the run's GPU cost.")
    part = _advice(_flat(hand_profile()), memory=100 * MB, ctx=ctx)               # 5% of the peak, still over
    assert part.status == "recommended"


def test_a_one_time_cost_many_times_the_run_reads_as_a_multiple():
    # 10 planned steps of 1 s: compiling for 600 s is 60 times the run
    a = _advice(_flat(hand_profile()), 0.05, one_time=OneTimeCost("compiling the model", "a stated model", s=600),
                ctx=AdviceContext(run_steps=10))
    assert a.status == "no_saving"
    assert "but costs 60 times the run's GPU cost once ($0.60): net a loss of 60 times the run's GPU cost" in a.rationale
