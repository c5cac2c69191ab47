"""quantization: frozen Linear weights stored as int8/int4; outputs close, bytes down."""
from __future__ import annotations

import torch

from ccprof.applier.runtime import RunObjects, apply_lora, apply_quantization
from ccprof.tweaks.quantization.runtime import QuantLinear, dequantize_weight, quantize_weight
from tests.helpers.models import Plain, batch, gpt_loss, tiny_gpt, tiny_llama


def test_roundtrip_error_bounds():
    torch.manual_seed(0)
    w = torch.randn(16, 128)
    q, s = quantize_weight(w, 8)
    assert q.dtype == torch.int8
    # rounding error is at most half a step: absmax/127/2 per row
    assert ((dequantize_weight(q, s, 8) - w).abs() <= s / 2 + 1e-7).all()
    q4, s4 = quantize_weight(w, 4)
    assert q4.dtype == torch.uint8 and q4.shape == (16, 64)          # two codes per byte
    err = (dequantize_weight(q4, s4, 4) - w).abs().reshape(16, 2, 64)
    assert (err <= s4.unsqueeze(2) / 2 + 1e-6).all()


def test_after_lora_base_layers_int8_outputs_close_grads_flow_to_adapters():
    model = tiny_gpt()
    x, y = batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    apply_lora(RunObjects(model, [opt]), r=4)
    ref = model(x).detach()
    r = apply_quantization(RunObjects(model, [opt]))
    # every frozen Linear: the 16 base layers under LoRA and the (frozen) head
    assert r.applied and len(r.details["layers"]) == 17 and "head" in r.details["layers"]
    assert isinstance(model.blocks[0].fc1.base_layer, QuantLinear)
    # 16 base weights: fp32 4 bytes -> int8 1 byte + one fp32 scale per row
    assert r.details["bytes_after"] < 0.5 * r.details["bytes_before"]
    out = model(x)
    assert (out - ref).abs().max() < 0.02 * ref.abs().max()              # int8 per-row: ~1% error
    opt.zero_grad()
    gpt_loss(model, x, y).backward()
    b = model.blocks[0].fc1.lora_B["default"].weight     # B=0 at init, so A's first grad is 0
    assert b.grad is not None and b.grad.abs().sum() > 0
    assert model.wte.weight.grad is None                                 # frozen by lora
    kept = {id(p) for p in model.parameters()}
    assert all(id(p) in kept for g in opt.param_groups for p in g["params"])   # replaced weights left
    opt.step()


def test_int4_and_input_grad_matches_dequantized_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(128, 16)
    lin.requires_grad_(False)
    q = QuantLinear(lin, bits=4)
    x = torch.randn(3, 128, requires_grad=True)
    q(x).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    torch.nn.functional.linear(x2, q.weight, lin.bias).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)


def test_hf_llama_freeze_targets():
    model = tiny_llama()
    x, _ = batch()
    ref = model(input_ids=x).logits.detach()
    r = apply_quantization(RunObjects(model, []), freeze_targets=True)
    assert r.applied and len(r.details["layers"]) == 14                # 7 Linear x 2 layers
    assert (model(input_ids=x).logits - ref).abs().max() < 0.05 * ref.abs().max()
    again = apply_quantization(RunObjects(model, []))
    assert again.already_applied


def test_cannot_quantize_trained_weights():
    r = apply_quantization(RunObjects(tiny_gpt()))
    assert not r.applied and "no frozen nn.Linear" in r.reason
    r = apply_quantization(RunObjects(Plain()), targets=["fc"])
    assert not r.applied and "quantization-aware training" in r.reason
    r = apply_quantization(RunObjects(Plain()), bits=3)
    assert not r.applied and "bits must be 8 or 4" in r.reason
