"""grad_accumulation: micro-batches inside the live forward give the full batch's gradients."""
from __future__ import annotations

import torch

from ccprof.applier.runtime import RunObjects, apply_grad_accumulation, runtime_notes
from tests.helpers.models import batch, grads, saved_bytes, tiny_gpt, tiny_llama


def test_nanogpt_style_loss_grads_match_full_batch():
    x, y = batch(n=6)
    ref_model = tiny_gpt()
    ref_logits, ref_loss = ref_model(x, y)
    ref_loss.backward()
    other = tiny_gpt()
    ref_saved, _ = saved_bytes(lambda: other(x, y), other)

    model = tiny_gpt()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r = apply_grad_accumulation(RunObjects(model, [opt], example_args=(x, y)), micro_batches=3)
    assert r.applied
    opt.zero_grad()
    acc_saved, (logits, loss) = saved_bytes(lambda: model(x, y), model)
    opt.zero_grad()               # a zero_grad between forward and backward must not lose micro-batches
    loss.backward()
    assert torch.allclose(loss, ref_loss, atol=1e-6) and logits.shape == ref_logits.shape
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    ref, got = grads(ref_model), grads(model)
    for n in ref:
        assert torch.allclose(got[n], ref[n], atol=1e-6), n
    # Only the last of 3 micro-batches keeps its graph when the forward returns.
    assert acc_saved < 0.5 * ref_saved


def test_hf_llama_with_labels():
    x, _ = batch(n=4)
    ref_model = tiny_llama()
    ref_model(input_ids=x, labels=x).loss.backward()
    model = tiny_llama()
    r = apply_grad_accumulation(RunObjects(model, [], example_kwargs={"input_ids": x, "labels": x}))
    assert r.applied
    out = model(input_ids=x, labels=x, use_cache=False)
    out.loss.backward()
    ref = grads(ref_model)
    for n, p in model.named_parameters():
        # same number of tokens per sample, so the sample-weighted mean is the token mean
        assert torch.allclose(p.grad, ref[n], atol=1e-5), n
    assert out.logits.shape == (4, 8, 256)


def test_loss_outside_model_cannot_apply_and_says_what_instead():
    x, _ = batch()
    r = apply_grad_accumulation(RunObjects(tiny_gpt(), example_args=(x,)))
    assert not r.applied and "outside TinyGPT(...)" in r.reason and "ccprof apply -t grad_accumulation" in r.reason


def test_runtime_call_without_loss_runs_whole_and_notes_it():
    model = tiny_gpt()
    assert apply_grad_accumulation(RunObjects(model)).applied     # forward takes targets: allowed
    x, _ = batch()
    logits = model(x)                                              # but this call passes none
    assert logits.shape == (4, 8, 256)
    assert "returned no loss" in runtime_notes(model)["grad_accumulation"][0]


def test_second_apply_noop_and_eval_passthrough():
    model = tiny_gpt()
    apply_grad_accumulation(RunObjects(model))
    fwd = model.forward
    again = apply_grad_accumulation(RunObjects(model), micro_batches=4)
    assert again.already_applied and model.forward is fwd
    x, y = batch()
    model.eval()
    with torch.no_grad():
        logits, loss = model(x, y)
    assert logits.shape == (4, 8, 256) and runtime_notes(model) == {}
