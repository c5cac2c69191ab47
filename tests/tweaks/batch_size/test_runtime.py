"""The batch_size runtime applier resizes the DataLoaders and scales the learning rate by the
contract's rule: the optimizer's own (sqrt for Adam, linear for SGD) unless the options say."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ccprof.applier.runtime import RunObjects, apply_tweak
from ccprof.artefacts.tweaks import BatchSizeOptions


def _objs(opt_cls, lr):
    model = torch.nn.Linear(4, 2)
    opt = opt_cls(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    loader = DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=4)
    return RunObjects(model, [opt], [loader], schedulers=[sched]), opt, sched, loader


@pytest.mark.parametrize("opt_cls, rule, factor", [
    (torch.optim.AdamW, None, math.sqrt(4)),        # AdamW's own rule: square root (Malladi et al. 2022)
    (torch.optim.SGD, None, 4.0),                   # SGD's own rule: linear (Goyal et al. 2017)
    (torch.optim.AdamW, "linear", 4.0),             # as the options say
    (torch.optim.SGD, "none", 1.0),
])
def test_the_learning_rate_follows_the_rule(opt_cls, rule, factor):
    objs, opt, sched, loader = _objs(opt_cls, 0.01)
    r = apply_tweak("batch_size", objs, BatchSizeOptions(batch_size=16, lr_rule=rule))
    assert r.applied and loader.batch_size == 16 and r.details["sizes"] == [(4, 16)]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * factor)
    assert sched.base_lrs == [pytest.approx(0.01 * factor)]      # the schedule keeps the new peak
    assert any("lr x" in c for c in r.changes) == (factor != 1.0)


def test_the_advice_options_keep_is_not_a_runtime_keyword():
    # keep= changes the run's length, which a re-run of a few steps does not have
    assert "keep" not in BatchSizeOptions(batch_size=8, keep="steps", lr_rule="sqrt").runtime_kwargs()
