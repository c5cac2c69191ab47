from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.profiler.profile import Flops, StaticFacts
from test_advisors_models import cnn_plain, hand_profile, llama_plain, priced


def test_formula_structured_and_2_4():
    a = advise_one("pruning", hand_profile(), AdviceContext(prune_frac=0.25))
    # matmul share 100% -> 25% structured; Linear 600e9 of 1e12 x (1 - 1/2) = 30% with 2:4 on an A100
    assert a.projected.time_saved_frac == pytest.approx(0.25)
    assert a.details["sparse_2_4_time_saved_frac"] == pytest.approx(0.3)
    assert "no dense speed-up" in a.rationale and a.risk == "accuracy" and a.confidence == "low"


def test_no_2_4_before_ampere():
    a = advise_one("pruning", hand_profile(), AdviceContext(gpu="t4"))
    assert a.details["sparse_2_4_time_saved_frac"] == 0 and "predates Ampere" in a.rationale


def test_fires_on_real_models():
    assert advise_one("pruning", priced(llama_plain())).status == "recommended"
    assert advise_one("pruning", cnn_plain()).status == "recommended"


def test_not_applicable_when_matmuls_are_minor():
    p = hand_profile(flops=Flops(per_step=10**12, forward=10**12 // 3, by_op={"aten.mm": 10**11, "aten.add": 9 * 10**11}))
    p = replace(p, model=replace(p.model, modules=[], linear_names=[]))
    assert advise_one("pruning", p).status == "not_applicable"


def test_already_applied():
    p = replace(llama_plain(), static=StaticFacts(lines={"prune": 12}))
    assert advise_one("pruning", p).status == "already_applied"
