"""pruning: torch.nn.utils.prune masks on the live model; pruned weights stay zero while training."""
from __future__ import annotations

import pytest
import torch

from ccprof.applier.runtime import RunObjects, apply_pruning
from ccprof.tweaks.pruning.runtime import mask_2_4
from tests.helpers.models import Plain, batch, gpt_loss, tiny_gpt


@pytest.mark.parametrize("method, frac", [("l1_unstructured", 0.3), ("ln_structured", 0.25), ("2:4", 0.5)])
def test_methods_zero_the_right_fraction_and_stay_pruned(method, frac):
    model = tiny_gpt(n_layer=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    r = apply_pruning(RunObjects(model, [opt]), method=method, amount=frac)
    assert r.applied and len(r.details["layers"]) == 8
    assert abs(r.details["zero_frac"] - frac) < 0.02
    fc1 = model.blocks[0].fc1
    assert any(p is fc1.weight_orig for g in opt.param_groups for p in g["params"])  # same Parameter
    if method == "ln_structured":
        rows = (fc1.weight == 0).all(dim=1)
        assert rows.sum() == round(0.25 * 128)                         # whole output rows
    if method == "2:4":
        assert ((fc1.weight.reshape(-1, 4) != 0).sum(1) <= 2).all()
    x, y = batch()
    for _ in range(2):
        opt.zero_grad()
        gpt_loss(model, x, y).backward()
        opt.step()
    assert (fc1.weight[fc1.weight_mask == 0] == 0).all()               # still pruned after steps


def test_mask_2_4_keeps_two_largest():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 1.0, 1.1, -0.2, 0.0]])
    assert mask_2_4(w).tolist() == [[0, 1, 1, 0, 1, 1, 0, 0]]


def test_second_apply_noop_and_cannot_apply():
    model = tiny_gpt(n_layer=2)
    apply_pruning(RunObjects(model))
    again = apply_pruning(RunObjects(model))
    assert again.already_applied and "already" in again.reason
    r = apply_pruning(RunObjects(torch.nn.Sequential(torch.nn.ReLU())))
    assert not r.applied and "no Linear layers" in r.reason
    p = Plain()
    p.fc = torch.nn.Linear(6, 4)
    r = apply_pruning(RunObjects(p), method="2:4", targets=["fc"])
    assert not r.applied and "divisible by 4" in r.reason
