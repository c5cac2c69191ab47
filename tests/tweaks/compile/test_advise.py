from dataclasses import replace

import pytest

from ccprof.advisors import advise_one
from ccprof.artefacts.profile import OpCost, StaticFacts
from ccprof.hardware import cost_step, load_catalog, policy_for, translate
from ccprof.tweaks.compile.advise import COMPILE_S_PER_OP, compile_s
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


def test_fires_on_real_llama_when_the_run_outlasts_its_compilation():
    a = advise_one("compile", priced(llama_plain(), total_steps=1_000_000))
    assert a.status == "recommended" and "groups between matmuls" in a.rationale
    ot = a.details["one_time"]
    # the one-time cost is subtracted: the run's share saved is the step's share less compiling's share
    assert a.projected.cost_saved_frac == pytest.approx(a.projected.time_saved_frac - ot["share_of_run"], abs=1e-6)
    assert "One-time cost, subtracted from the saving: compiling" in a.rationale


def test_compilation_longer_than_the_saving_is_no_saving():
    # users saw compile recommended where compiling takes longer than the whole planned run: the tiny
    # Llama's 10,000 steps of ~2.2 ms on an A100 are ~22 s; compiling its forward and backward ops
    # (~330 x 39.5 ms = ~13 s) costs more than the ~32% it saves per step (~7 s)
    p = priced(llama_plain(), total_steps=10_000)
    a = advise_one("compile", p)
    ot, ns = a.details["one_time"], a.details["no_saving"]
    assert a.status == "no_saving"
    assert ot["s"] == pytest.approx(COMPILE_S_PER_OP * a.details["compile_ops"])
    assert ot["share_of_run"] == pytest.approx(ot["s"] / (p.cost.step_s * 10_000))
    assert ns["gross_cost_saved_frac"] > 0.01 and ns["cost_saved_frac"] < 0
    assert a.rationale.startswith("No saving once its one-time cost is counted")
    assert a.projected.usd_saved == 0


def test_compile_time_is_per_op_of_one_micro_batch():
    p = hand_profile(fusion=FUSION, ops=hand_ops() + CHAIN)
    s, ops = compile_s(p)
    # hand ops: forward mm (10) + relu (10) + the chain's 80 muls; backward 10 + 10 + 10
    assert ops == 130 and s == pytest.approx(130 * COMPILE_S_PER_OP)
    two = replace(p, steps=replace(p.steps, micro_batches=2))
    assert compile_s(two) == (pytest.approx(65 * COMPILE_S_PER_OP), 65)


def test_not_applicable_without_fusion_groups():
    a = advise_one("compile", hand_profile())
    assert a.status == "not_applicable" and "fusion groups" in a.rationale


def test_already_applied():
    p = replace(llama_plain(), static=StaticFacts(compile=True, lines={"compile": 5}))
    assert advise_one("compile", p).status == "already_applied"


def test_a_run_compiling_some_of_its_trained_models_is_not_already_applied():
    """A GAN that compiles G and trains D eager (roots ['Discriminator', 'OptimizedModule']) still
    has D to compile: the advice says which, and costs the step from eager as a stated bound."""
    p = hand_profile(fusion=FUSION, ops=hand_ops() + CHAIN, static=StaticFacts(compile=True, lines={"compile": 134}))
    p = replace(p, model=replace(p.model, roots=["Discriminator", "OptimizedModule"]))
    a = advise_one("compile", p)
    eager = advise_one("compile", replace(p, static=StaticFacts(), model=replace(p.model, roots=["Discriminator"])))
    assert a.status == "recommended", a.rationale
    assert a.rationale.startswith("The run trains 2 models and compiles 1: Discriminator runs eager")
    assert a.details["eager_roots"] == ["Discriminator"] and a.confidence == "low"
    assert any("upper bound" in s for s in a.assumptions)
    assert a.projected.time_saved_frac == pytest.approx(eager.projected.time_saved_frac)
    every = replace(p, model=replace(p.model, roots=["OptimizedModule", "OptimizedModule"]))
    assert advise_one("compile", every).status == "already_applied"
