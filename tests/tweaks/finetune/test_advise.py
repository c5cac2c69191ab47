from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from tests.helpers.profiles import cnn_plain, hand_profile, llama_plain, priced


def test_formula_budget_fraction():
    p = hand_profile(model=replace(hand_profile().model, hf_model_type="llama"))
    a = advise_one("finetune", p, AdviceContext(options={"finetune": {"budget_frac": 0.2}}))
    # saving = 1 - 0.2 of the run; $10 run -> $8
    assert a.status == "recommended"
    assert a.projected.time_saved_frac == pytest.approx(0.8)
    assert a.projected.usd_saved == pytest.approx(8.0)
    assert a.details["time_scope"] == "run"
    assert "20%" in a.rationale and a.assumptions and a.risk == "accuracy"


def test_fires_on_scratch_llama():
    a = advise_one("finetune", priced(llama_plain()))
    assert a.status == "recommended" and a.details["family"] == "llama"
    assert a.projected.usd_saved > 0 and "from_pretrained" in a.snippet


def test_not_applicable_for_unknown_family():
    a = advise_one("finetune", cnn_plain())
    assert a.status == "not_applicable" and a.projected.usd_saved == 0


def test_already_applied_when_loaded_from_checkpoint():
    p = llama_plain()
    p = replace(p, model=replace(p.model, pretrained=True, loaded_from="from_pretrained:tiny"))
    assert advise_one("finetune", p).status == "already_applied"


def test_vision_backbone_is_a_family():
    p = hand_profile(model=replace(hand_profile().model, class_="ResNet"))
    assert advise_one("finetune", p).details["family"] == "resnet"
