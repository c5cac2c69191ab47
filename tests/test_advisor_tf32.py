from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.profiler.profile import GpuProjection, OpCost, Precision
from test_advisors_models import hand_profile, llama_plain, priced


def test_formula_roofline_capped_at_3x():
    # one fp32 matmul op, compute-bound: 19.5e12 FLOPs = 1 s on an A100 at 19.5 TFLOP/s;
    # TF32 peak 156 -> 0.125 s, but at most 3x -> 0.333 s; saved 2/3 of a 1 s op-only step
    p = hand_profile(ops=[OpCost("aten.mm", "float32", 1, 19_500_000_000_000, 0, 0)])
    a = advise_one("tf32", p)
    launch = 5e-6
    assert a.projected.time_saved_frac == pytest.approx((1 - 1 / 3) / (1 + launch), rel=1e-6)


def test_bounded_by_bf16_projection():
    p = hand_profile(ops=[OpCost("aten.mm", "float32", 1, 19_500_000_000_000, 0, 0)],
                     projection={"a100-80gb": GpuProjection(step_s=1.0, step_s_bf16=0.5, fits=True)})
    assert advise_one("tf32", p).projected.time_saved_frac == pytest.approx(0.5)


def test_fires_on_real_llama_for_an_a100():
    a = advise_one("tf32", priced(llama_plain()))
    assert a.status == "recommended" and a.projected.time_saved_frac > 0


def test_not_applicable_on_t4():
    assert advise_one("tf32", priced(llama_plain(), gpu="t4")).status == "not_applicable"


def test_already_applied():
    p = replace(llama_plain(), precision=Precision(float32_matmul_precision="high"))
    assert advise_one("tf32", p).status == "already_applied"
