from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors._common import fp32_matmuls
from ccprof.artefacts.profile import Precision
from ccprof.hardware import cost_step, load_catalog, policy_for
from tests.helpers.profiles import cnn_plain, hand_profile, llama_plain, priced


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
    assert a.status == "recommended" and "TF32" in a.rationale
    assert a.rationale.startswith("fp32 matmuls are 100% of the step's FLOPs and")


def test_not_applicable_on_t4():
    assert advise_one("tf32", priced(llama_plain(), gpu="t4")).status == "not_applicable"


def test_already_applied():
    p = replace(llama_plain(), precision=Precision(float32_matmul_precision="high"))
    assert advise_one("tf32", p).status == "already_applied"


def test_a_step_tf32_cannot_move_states_the_same_fp32_matmul_fact_as_mixed_precision():
    # users saw tf32 say "no fp32 matmuls weigh on the step" while mixed_precision said "fp32 matmuls are
    # 100% of the FLOPs". The tiny CNN's convolutions are all of its FLOPs, in fp32; on an A100 cuDNN
    # runs them on TF32 already, and what is left on CUDA cores (its Linear head) is a sliver of a step
    # the host's dispatch sets: tf32 saves nothing, and says so with the shared figures
    p = priced(cnn_plain())
    t, mp = advise_one("tf32", p), advise_one("mixed_precision", p)
    fm = fp32_matmuls(p, AdviceContext())
    assert fm.flops_frac == pytest.approx(1.0) and fm.cuda_core_time_frac < 0.1
    assert t.status == "no_saving" and "No fp32 matmuls" not in t.rationale
    assert t.rationale.startswith("No projected saving of the run's GPU cost. fp32 matmuls are 100% of the step's FLOPs")
    assert "already runs on TF32: cuDNN convolutions' default" in t.rationale
    assert t.details["facts"]["fp32_matmul_flops_frac"] == pytest.approx(mp.details["fp32_matmul_flops_frac"])
    assert "fp32 matmuls are 100% of the" in mp.rationale


def test_no_fp32_matmuls_is_not_applicable():
    # the hand profile's matmuls recorded in bf16 (a model cast to bf16 by hand)
    p = hand_profile(ops=[replace(o, dtype="bfloat16") if o.op == "aten.mm" else o for o in hand_profile().ops])
    a = advise_one("tf32", p)
    assert a.status == "not_applicable" and a.rationale.startswith("No matmul, convolution or attention op ran in fp32")
    assert a.details["facts"]["fp32_matmul_flops_frac"] == 0
