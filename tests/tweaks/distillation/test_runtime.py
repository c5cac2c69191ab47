"""distillation: the live model becomes a shallower student trained on a frozen teacher's soft labels."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ccprof.applier.runtime import RunObjects, apply_distillation
from ccprof.tweaks.distillation.runtime import kd_loss
from tests.helpers.models import Plain, batch, gpt_loss, tiny_gpt, tiny_llama


def test_student_drops_blocks_and_optimizer_forgets_them():
    model = tiny_gpt(n_layer=4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    r = apply_distillation(RunObjects(model, [opt]))
    assert r.applied and r.details["blocks_before"] == 4 and r.details["blocks_after"] == 2
    assert len(model.blocks) == 2
    per_block = 12                      # 4 Linear x (weight, bias) + 2 LayerNorm x (weight, bias)
    assert sum(len(g["params"]) for g in opt.param_groups) == n_params - 2 * per_block
    own = {id(p) for p in model.parameters()}
    assert all(id(p) in own for g in opt.param_groups for p in g["params"])
    teacher = model._ccprof_state["distillation"]["teacher"]
    assert len(teacher.blocks) == 4 and not any(p.requires_grad for p in teacher.parameters())
    assert not any(id(p) in own for p in teacher.parameters())    # teacher is a separate copy
    assert "forward" not in teacher.__dict__                      # no ccprof wrappers in the teacher


def test_logits_gradient_mixes_user_loss_and_kd():
    x, y = batch()
    alpha, T = 0.5, 2.0
    model = tiny_gpt(n_layer=4)
    apply_distillation(RunObjects(model, []), alpha=alpha, temperature=T)
    teacher = model._ccprof_state["distillation"]["teacher"]
    loss = gpt_loss(model, x, y)             # the user's unchanged loss code
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    with torch.no_grad():
        t = teacher(x)
    s = model.forward.__wrapped__(x)         # the student's own forward, no KD wrapper
    want = alpha * F.cross_entropy(s.reshape(-1, 256), y.reshape(-1)) + (1 - alpha) * kd_loss(s, t, T)
    want.backward()
    for n, p in model.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-6), n


def test_hf_llama_loss_keeps_value_and_config_follows():
    x, _ = batch()
    model = tiny_llama()                      # 2 layers -> keep_every=2 keeps layer 0
    r = apply_distillation(RunObjects(model, []), alpha=0.3)
    assert r.applied and model.config.num_hidden_layers == 1 and len(model.model.layers) == 1
    assert model.model.layers[0].self_attn.layer_idx == 0
    out = model(input_ids=x, labels=x)
    plain = model.forward.__wrapped__(input_ids=x, labels=x)
    assert torch.allclose(out.loss, plain.loss, atol=1e-6)       # the user's loss value, unchanged
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    teacher = model._ccprof_state["distillation"]["teacher"]
    assert teacher.config.num_hidden_layers == 2


def test_second_apply_noop_and_cannot_apply_says_why():
    model = tiny_gpt(n_layer=4)
    apply_distillation(RunObjects(model))
    again = apply_distillation(RunObjects(model))
    assert again.already_applied and len(model.blocks) == 2
    r = apply_distillation(RunObjects(Plain()))
    assert not r.applied and "no ModuleList/Sequential" in r.reason
    r = apply_distillation(RunObjects(tiny_gpt(n_layer=4)), keep=[0, 1, 2, 3])
    assert not r.applied and "would not make a smaller student" in r.reason
