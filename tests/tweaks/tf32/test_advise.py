from dataclasses import replace

import pytest

from ccprof.advisors import advise_one
from ccprof.artefacts.profile import Precision
from ccprof.hardware import cost_step, load_catalog, policy_for
from tests.helpers.profiles import hand_profile, llama_plain, priced


def test_formula_is_the_step_re_costed_on_tf32():
    p = hand_profile()
    a = advise_one("tf32", p)
    spec = load_catalog()["a100-80gb"]
    base = policy_for(p, spec)
    before = cost_step(p, spec, base)
    after = cost_step(p, spec, replace(base, tf32_matmul=True, tf32_cudnn=True))
    # only the fp32 GEMMs move (to TF32 tensor cores, 156 vs 19.5 TFLOP/s dense); the rest stays
    assert after.by_class["gemm"] < before.by_class["gemm"] / 3
    assert after.by_class["elementwise"] == pytest.approx(before.by_class["elementwise"])
    assert a.status == "recommended"
    assert a.projected.time_saved_frac == pytest.approx(1 - after.step_s / before.step_s, abs=1e-6)


def test_fires_on_real_llama_for_an_a100():
    a = advise_one("tf32", priced(llama_plain()))
    assert a.status in ("recommended", "not_applicable") and "TF32" in a.rationale


def test_not_applicable_on_t4():
    assert advise_one("tf32", priced(llama_plain(), gpu="t4")).status == "not_applicable"


def test_already_applied():
    p = replace(llama_plain(), precision=Precision(float32_matmul_precision="high"))
    assert advise_one("tf32", p).status == "already_applied"
