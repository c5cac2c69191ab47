"""mixed_precision: autocast around the live forward; fp16 adds dynamic loss scaling."""
from __future__ import annotations

import math

import torch

from ccprof.applier.runtime import RunObjects, apply_mixed_precision, apply_tweak, runtime_notes
from tests.helpers.models import Plain, batch, gpt_loss, grads, tiny_gpt, tiny_llama


def test_bf16_forward_close_and_loss_fp32():
    model = tiny_gpt()
    x, y = batch()
    ref = model(x)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    r = apply_mixed_precision(RunObjects(model, [opt]))
    assert r.applied and r.details["dtype"] == "bfloat16" and not r.details["loss_scaling"]
    out = model(x)
    assert out.dtype == torch.float32                       # returned as fp32 for the user's loss
    # bf16 keeps 8 significand bits (unit roundoff 2^-8 ~ 0.4%); a few layers of matmuls stay
    # within a few percent of the fp32 logits' scale.
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    loss = gpt_loss(model, x, y)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_bf16_on_hf_llama_loss_close():
    model = tiny_llama()
    x, _ = batch()
    ref = model(input_ids=x, labels=x).loss
    r = apply_tweak("mixed_precision", RunObjects(model, []))
    assert r.applied
    out = model(input_ids=x, labels=x)
    assert out.loss.dtype == torch.float32 and out.logits.dtype == torch.float32
    assert math.isclose(out.loss.item(), ref.item(), rel_tol=0.02)


def test_fp16_loss_scaling_gives_true_grads_and_skips_overflow():
    x, y = batch()
    ref_model = tiny_gpt()
    with torch.autocast("cpu", dtype=torch.float16):
        logits = ref_model(x)
    torch.nn.functional.cross_entropy(logits.float().reshape(-1, 256), y.reshape(-1)).backward()
    ref = grads(ref_model)

    model = tiny_gpt()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r = apply_mixed_precision(RunObjects(model, [opt]), dtype="float16", init_scale=1024.0)
    assert r.applied and r.details["loss_scaling"]
    gpt_loss(model, x, y).backward()
    got = grads(model)
    for n in ref:   # scaled by 1024 through fp16 activations, then unscaled: same gradients
        assert torch.allclose(got[n], ref[n], rtol=1e-2, atol=1e-4), n
    before = model.head.weight.detach().clone()
    opt.step()
    assert not torch.equal(model.head.weight, before)       # a clean step updates

    scaler = model._ccprof_state["loss_scaler"]
    scaler.scale = 1e30                                     # force an fp16 overflow
    opt.zero_grad()
    gpt_loss(model, x, y).backward()
    before = model.head.weight.detach().clone()
    opt.step()
    assert torch.equal(model.head.weight, before)           # the overflowed step is skipped
    assert scaler.scale == 5e29 and scaler.skipped_steps == 1
    assert "skipped 1 step" in runtime_notes(model)["mixed_precision"][0]


def test_second_apply_and_user_autocast_are_noops():
    model = tiny_gpt()
    assert apply_mixed_precision(RunObjects(model)).applied
    fwd = model.forward
    again = apply_mixed_precision(RunObjects(model))
    assert not again.applied and again.already_applied and "already applied" in again.reason
    assert model.forward is fwd
    other = tiny_gpt()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = apply_mixed_precision(RunObjects(other))
    assert not r.applied and r.already_applied and "autocast" in r.reason


def test_cannot_apply_to_half_params_or_fp16_without_optimizer():
    half = Plain().to(torch.bfloat16)
    r = apply_mixed_precision(RunObjects(half))
    assert not r.applied and "already torch.bfloat16" in r.reason
    r = apply_mixed_precision(RunObjects(Plain()), dtype="float16")
    assert not r.applied and "no torch.optim optimizer" in r.reason
