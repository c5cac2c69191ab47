from dataclasses import replace

import pytest
import torch

from ccprof.advisors import advise_one
from test_advisors_models import GPT, gpt_batches, gpt_loss, gpt_plain, hand_profile


def test_formula():
    a = advise_one("fused_optimizer", hand_profile())
    # optimizer 0.1 of a 1 s step, 2x faster fused -> 5%; $10 -> $0.50
    assert a.projected.time_saved_frac == pytest.approx(0.05)
    assert a.projected.usd_saved == pytest.approx(0.5)


def test_fires_on_real_adamw():
    a = advise_one("fused_optimizer", gpt_plain())
    assert a.status in ("recommended", "not_applicable") and "AdamW" in a.snippet
    p = replace(gpt_plain(), steps=replace(gpt_plain().steps, phase_s={"forward": 0.5, "backward": 0.3, "optimizer": 0.2}))
    assert advise_one("fused_optimizer", p).status == "recommended"


def test_not_applicable_without_optimizer():
    assert advise_one("fused_optimizer", replace(hand_profile(), optimizer=None)).status == "not_applicable"


def test_already_applied_with_fused_adamw():
    from ccprof.api import profile_model
    m = GPT()
    p = profile_model(m, torch.optim.AdamW(m.parameters(), fused=True), gpt_batches(), gpt_loss, steps=2, warmup=1)
    assert advise_one("fused_optimizer", p).status == "already_applied", p.optimizer
