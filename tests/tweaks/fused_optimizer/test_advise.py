from dataclasses import replace

import pytest
import torch

from ccprof.advisors import advise_one
from ccprof.hardware import cost_step, load_catalog, policy_for, translate
from tests.helpers.profiles import GPT, gpt_batches, gpt_loss, gpt_plain, hand_profile


def test_formula():
    p = hand_profile()
    a = advise_one("fused_optimizer", p)
    spec = load_catalog()["a100-80gb"]
    base = policy_for(p, spec)
    before, after = cost_step(p, spec, base), cost_step(p, spec, replace(base, optimizer="fused"))
    # AdamW over 10 x 8.0M fp32 weights: foreach streams each op's tensors again (the recorded
    # per-parameter bytes); fused reads and writes each tensor once: 28 bytes x its 100M parameters
    assert base.optimizer == "foreach"
    (fused,) = [k for k in translate(p, spec, replace(base, optimizer="fused")) if k.cls == "fused_optimizer"]
    assert fused.nbytes == 28 * 100_000_000               # the optimizer steps 100M parameters
    assert after.phase_s["optimizer"] < before.phase_s["optimizer"]
    assert a.status == "recommended"
    assert a.projected.time_saved_frac == pytest.approx(1 - after.step_s / before.step_s, abs=1e-6)
    assert a.projected.usd_saved == pytest.approx(10.0 * (1 - after.step_s / before.step_s), rel=1e-3)


def test_real_adamw_gets_an_answer():
    a = advise_one("fused_optimizer", gpt_plain())
    assert a.status in ("recommended", "not_applicable") and "AdamW" in a.snippet
    assert "fused" in a.rationale


def test_not_applicable_without_optimizer():
    assert advise_one("fused_optimizer", replace(hand_profile(), optimizer=None)).status == "not_applicable"


def test_already_applied_with_fused_adamw():
    from ccprof.api import profile_model
    m = GPT()
    p = profile_model(m, torch.optim.AdamW(m.parameters(), fused=True), gpt_batches(), gpt_loss, steps=2, warmup=1)
    assert advise_one("fused_optimizer", p).status == "already_applied", p.optimizer


FUSED_ON_CUDA = """
import inspect, torch
device = "cuda" if torch.cuda.is_available() else "cpu"
device_type = "cuda" if "cuda" in device else "cpu"
model = torch.nn.Linear(2, 2).to(device)
fused_available = "fused" in inspect.signature(torch.optim.AdamW).parameters
use_fused = fused_available and device_type == "cuda"
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=use_fused)
"""


def test_fused_only_on_cuda_is_already_applied_and_the_baseline_is_fused():
    """issue 20: a CPU run of `fused=use_fused` (True on CUDA) measured the unfused branch; the target
    GPU takes the fused one, for this advice and for every other advice's 'before'."""
    from ccprof.api import profile_model
    from ccprof.profiler.static import static_facts_from_source
    m = GPT()
    p = profile_model(m, torch.optim.AdamW(m.parameters(), fused=False), gpt_batches(), gpt_loss, steps=2, warmup=1)
    assert not p.optimizer.optimizers[0].fused                     # what the CPU run measured
    unfused = policy_for(p)
    p = replace(p, static=static_facts_from_source(FUSED_ON_CUDA))
    assert p.static.on_cuda == {"fused_optimizer": "`AdamW(..., fused=use_fused)`"}
    a = advise_one("fused_optimizer", p)
    assert a.status == "already_applied"
    assert a.rationale.startswith("Already applied on CUDA (line 8: `AdamW(..., fused=use_fused)`)")
    spec = load_catalog()["a100-80gb"]
    assert unfused.optimizer == "foreach" and policy_for(p, spec).optimizer == "fused"
    # the projected step (every advice's 'before') costs the fused update
    assert cost_step(p, spec).phase_s["optimizer"] == pytest.approx(
        cost_step(p, spec, replace(unfused, optimizer="fused")).phase_s["optimizer"])


class _Branchy(torch.nn.Module):
    """A model whose ``extra`` layer runs on every other call only: the steps that skip it leave
    its parameters without a gradient (set_to_none zero_grad), as a data-dependent branch would."""

    def __init__(self):
        super().__init__()
        self.inp, self.extra, self.out = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = self.inp(x).relu()
        if self.calls % 2 == 0:
            h = self.extra(h).relu()
        return self.out(h)


def _branchy_batches(n=6):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 8, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(n)]


def _branchy_loss(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


_CE = torch.nn.functional.cross_entropy       # what profile_model applies to (model(x), y)


def test_fused_sgd_with_momentum_is_not_advised_when_steps_leave_parameters_without_gradients():
    """dynamic_net's class: SGD(momentum) fused fails once a parameter gets its first gradient after
    the others hold momentum buffers. The run records which parameters some steps left out."""
    from ccprof.api import profile_model
    m = _Branchy()
    p = profile_model(m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), _branchy_batches(), _CE,
                      steps=3, warmup=1)
    (info,) = p.optimizer.optimizers
    assert info.grad_gaps == ["extra.weight", "extra.bias"] and info.grad_gap_params == 2
    a = advise_one("fused_optimizer", p)
    assert a.status == "not_applicable" and "extra.weight" in a.rationale and "momentum" in a.rationale
    # what the advice says torch does: the fused step fails on the first step that reaches `extra`
    m2 = _Branchy()
    fused = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9, fused=True)
    with pytest.raises(TypeError, match="NoneType"):
        for batch in _branchy_batches():
            fused.zero_grad()
            _branchy_loss(m2, batch).backward()
            fused.step()


@pytest.mark.parametrize("make", [lambda ps: torch.optim.SGD(ps, lr=0.1),
                                  lambda ps: torch.optim.AdamW(ps, lr=1e-3)], ids=["sgd-no-momentum", "adamw"])
def test_gaps_do_not_block_the_updates_that_follow_them(make):
    from ccprof.api import profile_model
    m = _Branchy()
    p = profile_model(m, make(m.parameters()), _branchy_batches(), _CE, steps=3, warmup=1)
    assert p.optimizer.optimizers[0].grad_gap_params == 2
    assert "without a gradient" not in advise_one("fused_optimizer", p).rationale
    m2 = _Branchy()
    opt = make(m2.parameters())
    for g in opt.param_groups:
        g["fused"] = True
    for batch in _branchy_batches():      # and torch's fused step does follow them
        opt.zero_grad()
        _branchy_loss(m2, batch).backward()
        opt.step()


def test_no_gaps_when_every_step_reaches_every_parameter():
    from ccprof.api import profile_model
    m = torch.nn.Linear(8, 2)
    p = profile_model(m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), _branchy_batches(), _CE,
                      steps=3, warmup=1)
    assert p.optimizer.optimizers[0].grad_gaps == [] and p.optimizer.optimizers[0].grad_gap_params == 0
