import math
from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from test_advisors_models import cnn_plain, hand_profile, llama_plain


def test_formula_memory_and_time():
    p = hand_profile()
    p = replace(p, model=replace(p.model, pretrained=True, loaded_from="load_state_dict"))   # full fine-tuning
    a = advise_one("lora", p, AdviceContext(lora_rank=8))
    # 10 Linear of 8M params; no head name -> all targeted; adapters 8 x 2 x isqrt(8e6)=2828 each
    adapters = 10 * 8 * 2 * math.isqrt(8_000_000)
    assert a.details["adapter_params"] == adapters
    # saved = grads 400 MB + optimizer 800 MB - adapters x (4 weight + 4 grad + 8 state)
    assert a.projected.memory_saved_bytes == 1_200_000_000 - adapters * 16
    # weight-grad FLOPs = forward share of each Linear: 10 x 60e9 / 3 = 200e9 of 1e12;
    # adapters cost 3 x 20e9 x 45248/8e6 each; compute share 0.8; optimizer 0.1 x (1 - 452480/1e8)
    fwd = 20e9
    adapter_flops = 10 * 3 * fwd * (8 * 2 * math.isqrt(8_000_000)) / 8_000_000
    expected = (200e9 - adapter_flops) / 1e12 * 0.8 + 0.1 * (1 - adapters / 1e8)
    assert a.projected.time_saved_frac == pytest.approx(expected, rel=1e-4)
    assert a.projected.usd_saved == pytest.approx(10 * expected, rel=1e-3)


def test_fires_on_llama():
    a = advise_one("lora", llama_plain())
    assert a.status == "recommended"
    assert "lm_head" not in a.details["targets"] and len(a.details["targets"]) == 14
    assert "LoraConfig" in a.snippet and "built from scratch" in a.rationale


def test_not_applicable_on_conv_net():
    assert advise_one("lora", cnn_plain()).status == "not_applicable"


def test_not_applicable_from_scratch_without_a_family():
    # Linear-heavy, but trained from scratch with nothing pretrained to adapt
    a = advise_one("lora", hand_profile())
    assert a.status == "not_applicable" and "from scratch" in a.rationale


def test_already_applied_with_peft():
    from peft import LoraConfig, get_peft_model
    from test_advisors_models import llama, llama_batches, run

    p = run(get_peft_model(llama(), LoraConfig(r=4, target_modules=["q_proj"])), llama_batches(batch=2, seq=16))
    assert advise_one("lora", p).status == "already_applied"
