"""lora: peft adapters injected in place, base frozen, adapters trained by the user's optimizer."""
from __future__ import annotations

import torch

from ccprof.applier.runtime import RunObjects, apply_lora
from tests.helpers.models import Plain, batch, gpt_loss, tiny_gpt, tiny_llama


def _train_step(model, opt, x, y):
    opt.zero_grad()
    gpt_loss(model, x, y).backward()
    opt.step()


def test_custom_model_same_output_frozen_base_optimizer_updates_adapters():
    model = tiny_gpt()
    x, y = batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _train_step(model, opt, x, y)                    # warm-up step: optimizer state exists
    ref = model(x).detach()
    n_groups = len(opt.param_groups)
    r = apply_lora(RunObjects(model, [opt]), r=4)
    assert r.applied
    assert len(r.details["adapted"]) == 16           # 4 Linear x 4 blocks, not the head
    assert torch.allclose(model(x), ref, atol=1e-6)  # B = 0 at init: same function
    frozen = [p for n, p in model.named_parameters() if "lora_" not in n]
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    assert all(p not in opt.state for p in frozen)   # their Adam state is gone
    assert len(opt.param_groups) == n_groups + 1
    new = opt.param_groups[-1]["params"]
    assert all("lora" in n for n, p in model.named_parameters() if any(p is q for q in new))
    # Memory-relevant: only adapters train. r=4 x (in + out) per Linear, per block
    # qkv 4*(32+96) + proj 4*(32+32) + fc1 4*(32+128) + fc2 4*(128+32) = 2048; x 4 blocks = 8192
    # of 67,520 elements before.
    assert r.details["trainable_after"] == 8192 and r.details["trainable_before"] == 67520

    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    b_before = model.blocks[0].fc1.lora_B["default"].weight.detach().clone()
    _train_step(model, opt, x, y)
    assert not torch.equal(model.blocks[0].fc1.lora_B["default"].weight, b_before)
    for n, p in model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base_before[n]), n


def test_hf_llama_default_targets_and_second_apply():
    model = tiny_llama()
    x, _ = batch()
    ref = model(input_ids=x).logits.detach()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r = apply_lora(RunObjects(model, [opt]))
    assert r.applied
    assert sorted({n.rsplit(".", 1)[-1] for n in r.details["adapted"]}) == ["q_proj", "v_proj"]
    assert torch.allclose(model(input_ids=x).logits, ref, atol=1e-5)
    assert model.lm_head.weight.requires_grad is False
    n_groups = len(opt.param_groups)
    again = apply_lora(RunObjects(model, [opt]))
    assert not again.applied and again.already_applied and len(opt.param_groups) == n_groups


def test_user_peft_model_counts_as_already_applied():
    import peft
    model = tiny_gpt()
    peft.inject_adapter_in_model(peft.LoraConfig(r=2, target_modules=["blocks.0.fc1"]), model)
    r = apply_lora(RunObjects(model, [torch.optim.SGD(model.parameters(), lr=0.1)]))
    assert not r.applied and r.already_applied and "already has LoRA" in r.reason


def test_cannot_apply_without_optimizer_or_linear_layers():
    r = apply_lora(RunObjects(tiny_gpt()))
    assert not r.applied and "no torch.optim optimizer" in r.reason
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    r = apply_lora(RunObjects(conv, [torch.optim.SGD(conv.parameters(), lr=0.1)]))
    assert not r.applied and "no nn.Linear" in r.reason
    p = Plain()
    r = apply_lora(RunObjects(p, [torch.optim.SGD(p.parameters(), lr=0.1)]), target_modules=["nope"])
    assert not r.applied and "peft could not inject" in r.reason
