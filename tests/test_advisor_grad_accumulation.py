from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors.grad_accumulation import micro_batch_plan, peak_bytes_at_batch
from test_advisors_models import hand_profile, llama_plain, priced

MB = 10**6


def test_formula_peak_at_batch():
    p = hand_profile()
    # state 1600 MB fixed; activations 300 + other 100 scale: batch 4 -> 1600 + 400 x 4/8 = 1800
    assert peak_bytes_at_batch(p, 4) == 1800 * MB


def test_formula_micro_batch_plan():
    p = hand_profile()
    # budget 1800 MB: (1800 - 1600) / 50 MB per sample = 4 -> micro 4 x 2 steps for batch 8
    plan = micro_batch_plan(p, 8, 1800 * MB)
    assert (plan["micro_batch"], plan["accum_steps"]) == (4, 2)
    a = advise_one("grad_accumulation", p, AdviceContext(device_memory_bytes=2000 * MB))
    # 90% of 2000 MB = 1800 MB budget; peak 2000 does not fit
    assert a.status == "recommended" and a.projected.peak_bytes_after == 1800 * MB
    assert a.projected.time_saved_frac == pytest.approx(-0.02)       # one extra micro-batch x 2%


def test_fires_on_llama_on_a_small_device():
    p = llama_plain()
    a = advise_one("grad_accumulation", p, AdviceContext(device_memory_bytes=int(p.memory.peak_bytes * 0.8)))
    assert a.status == "recommended" and a.details["accum_steps"] >= 2


def test_not_applicable_when_it_fits():
    assert advise_one("grad_accumulation", priced(llama_plain())).status == "not_applicable"


def test_already_applied_with_micro_batches():
    p = llama_plain()
    p = replace(p, steps=replace(p.steps, micro_batches=4))
    assert advise_one("grad_accumulation", p).status == "already_applied"


def test_nothing_fits_says_what_next():
    p = hand_profile()
    a = advise_one("grad_accumulation", p, AdviceContext(device_memory_bytes=1000 * MB))
    assert a.status == "not_applicable" and "checkpointing" in a.rationale
