from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.artefacts.profile import Flops, RepeatedBlock, StaticFacts
from ccprof.hardware import cost_step, load_catalog
from ccprof.hardware.edits import narrow_blocks
from tests.helpers.profiles import cnn_plain, hand_profile, llama_plain, priced


def _blocks():
    """The hand profile with its 10 Linear layers as repeated blocks ``layers.0`` .. ``layers.9``."""
    p = hand_profile()
    rb = RepeatedBlock("layers", "Layer", 10, 8_000_000, [f"layers.{i}" for i in range(10)])
    return replace(p, model=replace(p.model, repeated_blocks=[rb]))


def test_formula_is_the_step_re_costed_narrower():
    p = _blocks()
    a = advise_one("pruning", p, AdviceContext(options={"pruning": {"amount": 0.25}}))
    spec = load_catalog()["a100-80gb"]
    before = cost_step(p, spec).step_s
    after = cost_step(p, spec, ops=narrow_blocks(p.ops, ["layers"], 0.75)).step_s
    assert after < before
    assert a.status == "recommended"
    assert a.projected.time_saved_frac == pytest.approx(1 - after / before, abs=1e-6)
    assert "no dense speed-up" in a.rationale and a.risk == "accuracy" and a.confidence == "low"
    assert "2:4 sparse tensor cores" in a.rationale          # an A100 has them
    # the fine-tune after pruning: a quarter of the run's steps at the pruned step time, counted once
    saved = 1 - after / before
    assert a.details["one_time"]["run_frac"] == pytest.approx(0.25 * (1 - saved), abs=1e-6)
    assert a.projected.cost_saved_frac == pytest.approx(saved - 0.25 * (1 - saved), abs=1e-5)
    assert a.projected.usd_saved == pytest.approx(10 * (saved - 0.25 * (1 - saved)), abs=1e-3)   # of the $10 run


def test_narrow_blocks_scales_a_gemm_by_the_kept_share():
    # a block GEMM [2048, 2828] x [2828, 2828]: both weight dims x sqrt(0.75) -> FLOPs x 0.75
    p = _blocks()
    (fwd,) = [o for o in narrow_blocks(p.ops, ["layers"], 0.75) if o.op == "aten.mm" and o.phase == "forward"]
    assert fwd.shapes == [[2048, 2449], [2449, 2449]]           # round(2828 x 0.866)
    assert fwd.flops == int(10 * 2 * 2048 * 2828 * 2828 * 0.75)


def test_no_2_4_before_ampere():
    a = advise_one("pruning", _blocks(), AdviceContext(gpu="t4"))
    assert "predates Ampere" in a.rationale


def test_a_step_saving_smaller_than_the_fine_tune_is_no_saving():
    # the tiny Llama's blocks are a sliver of its step: ~1.8% saved per step, while the fine-tune
    # after pruning costs a quarter of the run (~24.6%): no saving, with the figures
    a = advise_one("pruning", priced(llama_plain()))
    ns = a.details["no_saving"]
    assert a.status == "no_saving" and a.rationale.startswith("No saving once its one-time cost is counted")
    assert ns["one_time_frac"] == pytest.approx(0.25 * (1 - ns["gross_cost_saved_frac"]), abs=1e-6)
    assert ns["cost_saved_frac"] == pytest.approx(ns["gross_cost_saved_frac"] - ns["one_time_frac"], abs=1e-6)


def test_fires_on_llama_but_not_on_an_all_conv_net():
    assert advise_one("pruning", priced(llama_plain())).details["linear_layers"]
    a = advise_one("pruning", cnn_plain())                       # blocks of Conv2d/BatchNorm/ReLU only
    assert a.status == "not_applicable" and "no nn.Linear layers in its repeated blocks" in a.rationale


def test_not_applicable_without_repeated_blocks():
    p = hand_profile(flops=Flops(per_step=10**12, forward=10**12 // 3, by_op={"aten.mm": 10**11, "aten.add": 9 * 10**11}))
    assert advise_one("pruning", p).status == "not_applicable"


def test_already_applied():
    p = replace(llama_plain(), static=StaticFacts(lines={"prune": 12}))
    assert advise_one("pruning", p).status == "already_applied"
