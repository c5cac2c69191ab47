from dataclasses import replace

import pytest

from ccprof.advisors import advise_one
from test_advisors_models import gpt_loader_plain, hand_profile, llama_plain


def test_formula():
    p = hand_profile(data=replace(hand_profile().data, dataloader_seen=True, wait_frac=0.2, num_workers=0))
    a = advise_one("dataloader", p)
    # 20% wait x 90% hidden = 18%; $10 -> $1.80
    assert a.projected.time_saved_frac == pytest.approx(0.18) and a.projected.usd_saved == pytest.approx(1.8)
    assert "num_workers>0" in a.rationale


def test_fires_on_a_slow_loader_without_workers():
    p = gpt_loader_plain()
    a = advise_one("dataloader", p)
    assert a.status == "recommended", p.data.wait_frac
    assert "num_workers=" in a.snippet


def test_not_applicable_without_dataloader():
    assert advise_one("dataloader", llama_plain()).status == "not_applicable"


def test_already_applied_with_workers_and_no_wait():
    p = replace(gpt_loader_plain(), data=replace(gpt_loader_plain().data, num_workers=4, wait_frac=0.01))
    assert advise_one("dataloader", p).status == "already_applied"
