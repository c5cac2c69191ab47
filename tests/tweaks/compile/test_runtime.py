"""compile: the live forward is compiled; a model that cannot compile says why and stays eager."""
from __future__ import annotations

import torch
from torch import nn

from ccprof.applier.runtime import RunObjects, apply_compile, apply_tweak, runtime_notes
from tests.helpers.models import batch, tiny_gpt


class Branchy(nn.Module):
    """Data-dependent Python control flow: no single graph (fullgraph=True must fail)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if h.sum().item() > 0:
            return h * 2
        return h


def test_compiled_forward_same_output_and_rng_untouched():
    torch._dynamo.reset()
    model = tiny_gpt(n_layer=1)
    x, _ = batch()
    ref = model(x)
    torch.manual_seed(3)
    r = apply_compile(RunObjects(model, example_args=(x,)), backend="aot_eager")
    assert r.applied and r.details["trial"]
    after_trial = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(after_trial, torch.rand(1))          # the trial did not consume RNG
    assert torch.allclose(model(x), ref, atol=1e-5)
    assert hasattr(model.forward.__wrapped__, "__self__")   # the eager forward is kept underneath
    again = apply_compile(RunObjects(model), backend="aot_eager")
    assert not again.applied and again.already_applied


def test_compile_failure_is_reported_and_forward_restored():
    torch._dynamo.reset()
    model = Branchy()
    x = torch.randn(2, 8)
    eager = model.forward
    r = apply_tweak("compile", RunObjects(model, example_args=(x,)), {"backend": "eager", "fullgraph": True})
    assert not r.applied and "torch.compile(backend='eager') failed on Branchy.forward" in r.reason
    assert model.forward == eager and "forward" not in model.__dict__
    assert apply_compile(RunObjects(model), backend="eager").applied   # not marked: may be tried again


def test_runtime_failure_falls_back_to_eager_with_a_note():
    torch._dynamo.reset()
    model = Branchy()
    x = torch.randn(2, 8)
    r = apply_compile(RunObjects(model), backend="eager", fullgraph=True)   # no inputs: no trial
    assert r.applied and not r.details["trial"]
    assert model(x).shape == (2, 8)
    assert "fell back to eager" in runtime_notes(model)["compile"][0]
