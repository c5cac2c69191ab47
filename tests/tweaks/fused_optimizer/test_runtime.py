"""fused_optimizer: the user's optimizer switches to the fused kernel in place; same updates."""
from __future__ import annotations

import torch

from ccprof.applier.runtime import RunObjects, apply_fused_optimizer
from tests.helpers.models import batch, gpt_loss, tiny_gpt


def _steps(model, opt, n=2):
    x, y = batch()
    for _ in range(n):
        opt.zero_grad()
        gpt_loss(model, x, y).backward()
        opt.step()


def test_adamw_switches_to_the_fused_kernel_in_place():
    ref, model = tiny_gpt(n_layer=1), tiny_gpt(n_layer=1)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _steps(ref, ref_opt, 1)
    _steps(model, opt, 1)                      # state (with a step counter) already exists
    r = apply_fused_optimizer(RunObjects(model, [opt]))
    assert r.applied and all(g["fused"] for g in opt.param_groups)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _steps(model, opt, 1)
    assert any("_fused_adamw" in e.name for e in prof.events())          # the fused kernel ran
    _steps(model, opt, 1)
    _steps(ref, ref_opt, 2)
    # Same update rule; fused and unfused AdamW differ only in float rounding, which Adam's
    # normalisation amplifies on near-zero grads (the k-bias of attention): measured ~1.4e-4.
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-3), n
    again = apply_fused_optimizer(RunObjects(model, [opt]))
    assert again.already_applied


def test_optimizer_without_fused_gets_foreach_or_says_why():
    model = tiny_gpt(n_layer=1)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, foreach=False)
    r = apply_fused_optimizer(RunObjects(model, [opt]))
    assert r.applied and "foreach=True" in r.reason and opt.param_groups[0]["foreach"]
    lbfgs = torch.optim.LBFGS(model.parameters())
    r = apply_fused_optimizer(RunObjects(tiny_gpt(n_layer=1), [lbfgs]))
    assert not r.applied and "neither a fused nor a foreach" in r.reason
    r = apply_fused_optimizer(RunObjects(tiny_gpt(n_layer=1), []))
    assert not r.applied and "no torch.optim optimizer" in r.reason


def test_already_fused_by_user():
    model = tiny_gpt(n_layer=1)
    opt = torch.optim.Adam(model.parameters(), fused=True)
    r = apply_fused_optimizer(RunObjects(model, [opt]))
    assert not r.applied and r.already_applied and "already fused" in r.reason
