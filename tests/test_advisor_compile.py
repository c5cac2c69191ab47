from dataclasses import replace

import pytest

from ccprof.advisors import advise_one
from ccprof.profiler.profile import OpCost, StaticFacts
from test_advisors_models import hand_profile, llama_plain, priced


def test_formula_memory_bound_half():
    # matmul 1 s (19.5e12 FLOPs on the A100's fp32); add: 2.039e12 bytes = 1 s at 2,039 GB/s;
    # one launch each (10 us). Fusion halves the add and the launches: (1 + 1e-5)/2 / (2 + 1e-5)
    p = hand_profile(ops=[OpCost("aten.mm", "float32", 1, 19_500_000_000_000, 0, 0),
                          OpCost("aten.add", "float32", 1, 0, 2_039_000_000_000, 0)])
    a = advise_one("compile", p)
    assert a.projected.time_saved_frac == pytest.approx(0.5 * (1 + 5e-6) / (2 + 1e-5), abs=1e-6)   # stored to 6 decimals
    # capped at 1 - 1/1.41 when everything is memory-bound
    p = hand_profile(ops=[OpCost("aten.add", "float32", 1, 0, 2_039_000_000_000, 0)])
    assert advise_one("compile", p).projected.time_saved_frac == pytest.approx(1 - 1 / 1.41)


def test_fires_on_real_llama():
    a = advise_one("compile", priced(llama_plain()))
    assert a.status == "recommended" and "launch" in a.rationale


def test_not_applicable_without_op_table():
    assert advise_one("compile", hand_profile()).status == "not_applicable"


def test_already_applied():
    p = replace(llama_plain(), static=StaticFacts(compile=True, lines={"compile": 5}))
    assert advise_one("compile", p).status == "already_applied"
