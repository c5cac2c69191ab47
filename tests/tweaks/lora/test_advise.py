import math
from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.hardware import cost_step, load_catalog
from ccprof.hardware.edits import freeze_base
from tests.helpers.profiles import cnn_plain, hand_profile, llama_plain


def test_formula_memory_and_time():
    p = hand_profile()
    p = replace(p, model=replace(p.model, pretrained=True, loaded_from="load_state_dict"))   # full fine-tuning
    a = advise_one("lora", p, AdviceContext(options={"lora": {"rank": 8}}))
    # 10 Linear of 8M params; no head name -> all targeted; adapters 8 x 2 x isqrt(8e6)=2828 each
    adapters = 10 * 8 * 2 * math.isqrt(8_000_000)
    assert a.details["adapter_params"] == adapters
    # saved = grads 400 MB + optimizer 800 MB - adapters x (4 weight + 4 grad + 8 state)
    assert a.projected.memory_saved_bytes == 1_200_000_000 - adapters * 16
    # time: the step re-costed without the frozen weights' gradient GEMMs (10 x 2 x 2048 x 2828^2
    # FLOPs), an optimizer over the adapters only, and the adapters' rank-8 GEMMs
    spec = load_catalog()["a100-80gb"]
    before = cost_step(p, spec).step_s
    after = cost_step(p, spec, ops=freeze_base(p.ops, 8, adapters / 1e8)).step_s
    assert a.details["weight_grad_flops"] == 10 * 2 * 2048 * 2828 * 2828
    assert after < before
    assert a.projected.time_saved_frac == pytest.approx(1 - after / before, abs=1e-6)
    assert a.projected.usd_saved == pytest.approx(10 * (1 - after / before), rel=1e-3)


def test_fires_on_llama():
    # LoRA adapts pretrained weights: the tiny Llama as if loaded from a checkpoint (from scratch at
    # these widths no published Llama fits it: test_a_toy_of_a_family_..._is_not_applicable)
    p = llama_plain()
    p = replace(p, model=replace(p.model, pretrained=True, loaded_from="from_pretrained:tiny"))
    # on a device the peak fills, LoRA's memory is needed; on an 80 GB A100 this toy costs more time
    # with adapters than it saves (their extra kernels on 115k parameters): no saving, figures kept
    roomy = advise_one("lora", p)
    assert roomy.status == "no_saving" and roomy.details["no_saving"]["memory_saved_bytes"] > 0
    assert roomy.rationale.startswith("No saving: it would add")
    a = advise_one("lora", p, AdviceContext(device_memory_bytes=p.memory.peak_bytes))
    assert a.status == "recommended"
    assert "lm_head" not in a.details["targets"] and len(a.details["targets"]) == 14
    assert "LoraConfig" in a.snippet


def test_not_applicable_on_conv_net():
    assert advise_one("lora", cnn_plain()).status == "not_applicable"


def test_not_applicable_from_scratch_without_a_family():
    # Linear-heavy, but trained from scratch with nothing pretrained to adapt
    a = advise_one("lora", hand_profile())
    assert a.status == "not_applicable" and "from scratch" in a.rationale


def test_already_applied_with_peft():
    from peft import LoraConfig, get_peft_model

    from tests.helpers.profiles import llama, llama_batches, run

    p = run(get_peft_model(llama(), LoraConfig(r=4, target_modules=["q_proj"])), llama_batches(batch=2, seq=16))
    assert advise_one("lora", p).status == "already_applied"


def test_a_toy_of_a_family_no_published_checkpoint_fits_is_not_applicable():
    """A 2-layer GPT-2 with a 1,024-token vocabulary trained from scratch: no published GPT-2 loads
    into it, so there are no pretrained weights for LoRA to adapt (the check finetune makes)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.helpers.profiles import run

    torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1024, n_positions=64))
    x = torch.randint(0, 1024, (2, 32))
    a = advise_one("lora", run(m, [{"input_ids": x, "labels": x}]))
    assert a.status == "not_applicable", a.rationale
    assert "no published 'gpt2' checkpoint fits" in a.rationale and "1,024" in a.rationale, a.rationale
