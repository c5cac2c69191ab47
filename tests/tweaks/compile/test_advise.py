from dataclasses import replace

import pytest

from ccprof.advisors import advise_one
from ccprof.artefacts.profile import OpCost, StaticFacts
from ccprof.hardware import cost_step, load_catalog, policy_for, translate
from tests.helpers.profiles import hand_ops, hand_profile, llama_plain, priced

ACT = 4 * 2048 * 2828                       # one fp32 activation of the hand profile's layers
# after each ReLU, eight more elementwise ops (a hand-written activation): ten groups of nine
# non-matmul ops between the matmuls; fused, each group reads its input and writes its output once
CHAIN = [OpCost("aten.mul", "float32", 80, 0, 80 * ACT, 80 * ACT, "forward", shapes=[[2048, 2828]],
                out_shapes=[[2048, 2828]], scope="layers.*", autocast="low", autocast_bytes=80 * ACT)]
FUSION = {"forward": {"gaps": 10, "ops": 90, "bytes": 10 * 9 * 2 * ACT, "fused_bytes": 10 * 2 * ACT}}


def test_formula_is_the_step_re_costed_with_fusion():
    p = hand_profile(fusion=FUSION, ops=hand_ops() + CHAIN)
    a = advise_one("compile", p)
    spec = load_catalog()["a100-80gb"]
    base = policy_for(p, spec)
    before = cost_step(p, spec, base)
    after = cost_step(p, spec, replace(base, compiled=True))
    # forward: ten fused kernels move a ninth of the chains' bytes (backward has no groups here:
    # its ReLU gradients stay as they were); the matmuls are untouched
    fwd_stream = sum(k.device_s for k in translate(p, spec, base) if k.phase == "forward" and k.cls == "elementwise")
    assert after.by_class["fused"] == pytest.approx(fwd_stream / 9, rel=0.05)
    assert after.by_class["gemm"] == pytest.approx(before.by_class["gemm"])
    assert a.status == "recommended"
    assert a.projected.time_saved_frac == pytest.approx(1 - after.step_s / before.step_s, abs=1e-6)
    assert a.details["policy"] == {"compiled": True} and a.details["groups"] == 10


def test_fires_on_real_llama():
    a = advise_one("compile", priced(llama_plain()))
    assert a.status == "recommended" and "groups between matmuls" in a.rationale


def test_not_applicable_without_fusion_groups():
    a = advise_one("compile", hand_profile())
    assert a.status == "not_applicable" and "fusion groups" in a.rationale


def test_already_applied():
    p = replace(llama_plain(), static=StaticFacts(compile=True, lines={"compile": 5}))
    assert advise_one("compile", p).status == "already_applied"
