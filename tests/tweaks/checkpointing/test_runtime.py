"""checkpointing: repeated blocks recompute in backward; grads identical, less saved."""
from __future__ import annotations

import torch

from ccprof.applier.runtime import RunObjects, apply_checkpointing
from tests.helpers.models import Plain, batch, gpt_loss, grads, saved_bytes, tiny_gpt, tiny_llama


def test_custom_blocks_identical_grads_and_fewer_saved_bytes():
    x, y = batch()
    ref_model = tiny_gpt(dropout=0.1)              # dropout: recomputation must replay the RNG
    torch.manual_seed(5)
    ref_saved, loss = saved_bytes(lambda: gpt_loss(ref_model, x, y), ref_model)
    loss.backward()

    model = tiny_gpt(dropout=0.1)
    r = apply_checkpointing(RunObjects(model))
    assert r.applied and r.details["blocks"] == 4 and r.details["container"] == "blocks"
    assert all("forward" in b.__dict__ for b in model.blocks)        # wrapped on the instance
    torch.manual_seed(5)
    ck_saved, loss2 = saved_bytes(lambda: gpt_loss(model, x, y), model)
    loss2.backward()
    assert torch.equal(loss, loss2)
    ref, got = grads(ref_model), grads(model)
    assert ref.keys() == got.keys()
    for n in ref:
        assert torch.allclose(ref[n], got[n], atol=1e-6), n
    # Activations inside the 4 blocks are no longer kept: measured 3-4x fewer bytes here.
    assert ck_saved < 0.5 * ref_saved


def test_eval_and_no_grad_skip_checkpoint():
    model = tiny_gpt()
    apply_checkpointing(RunObjects(model))
    x, _ = batch()
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (4, 8, 256)


def test_hf_llama_uses_gradient_checkpointing_enable():
    x, _ = batch()
    ref_model = tiny_llama()
    ref_model.train()
    ref_saved, out = saved_bytes(lambda: ref_model(input_ids=x, labels=x, use_cache=False), ref_model)
    out.loss.backward()
    model = tiny_llama()
    model.train()
    r = apply_checkpointing(RunObjects(model))
    assert r.applied and r.details["method"].endswith("checkpointing_enable") and r.details["blocks"] == 2
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    ck_saved, out2 = saved_bytes(lambda: model(input_ids=x, labels=x, use_cache=False), model)
    out2.loss.backward()
    assert torch.allclose(out.loss, out2.loss)
    for n, g in grads(ref_model).items():
        assert torch.allclose(g, dict(model.named_parameters())[n].grad, atol=1e-6), n
    assert ck_saved < ref_saved
    again = apply_checkpointing(RunObjects(model))
    assert not again.applied and again.already_applied


def test_hf_model_already_checkpointed_by_user():
    model = tiny_llama()
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    r = apply_checkpointing(RunObjects(model))
    assert not r.applied and r.already_applied and "already on" in r.reason


def test_second_apply_is_noop_and_no_blocks_says_why():
    model = tiny_gpt()
    apply_checkpointing(RunObjects(model))
    wrapped = model.blocks[0].forward
    again = apply_checkpointing(RunObjects(model))
    assert not again.applied and again.already_applied and model.blocks[0].forward is wrapped
    r = apply_checkpointing(RunObjects(Plain()))
    assert not r.applied and "no ModuleList/Sequential of identical blocks" in r.reason
