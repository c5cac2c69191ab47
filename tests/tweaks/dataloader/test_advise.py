from dataclasses import replace

import pytest

from ccprof.advisors import advise_one
from ccprof.hardware import cost_step, load_catalog
from tests.helpers.profiles import gpt_loader_plain, hand_profile, llama_plain


def test_formula_is_the_wait_on_the_target_gpu():
    # 0.2 s to make a batch in the main process: on an A100 the GPU waits all of it every step;
    # with workers making batches in parallel it waits only for what its compute does not cover
    p = hand_profile(data=replace(hand_profile().data, dataloader_seen=True, num_workers=0, batch_s=0.2,
                                  batches_per_step=1.0))
    a = advise_one("dataloader", p)
    spec = load_catalog()["a100-80gb"]
    before = cost_step(p, spec)
    workers = 4           # the option's default: the GPU host's loader, not this machine's core count
    after = cost_step(replace(p, data=replace(p.data, num_workers=workers, pin_memory=True)), spec)
    assert before.phase_s["data"] == pytest.approx(0.2)
    compute = after.step_s - after.phase_s["data"]
    assert after.phase_s["data"] == pytest.approx(max(0.0, 0.2 / workers - compute))
    assert a.status == "recommended"
    assert a.projected.time_saved_frac == pytest.approx(1 - after.step_s / before.step_s, abs=1e-6)
    assert "num_workers>0" in a.rationale and a.details["workers_after"] == workers


def test_a_loader_that_already_has_the_workers_gets_twice_as_many_whatever_this_host():
    """A data-bound step with 4 workers: 8 on the GPU host (stated), not "more workers need more
    CPU cores" because the profiling machine has 2."""
    p = hand_profile(data=replace(hand_profile().data, dataloader_seen=True, num_workers=4, batch_s=0.8,
                                  batches_per_step=1.0))
    a = advise_one("dataloader", p)
    assert a.status == "recommended", a.rationale
    assert a.details["workers_after"] == 8 and "The GPU host has 8 CPU cores free" in " ".join(a.assumptions)


def test_fires_on_a_slow_loader_without_workers():
    p = gpt_loader_plain()
    a = advise_one("dataloader", p)
    assert a.status == "recommended", (p.data.batch_s, a.rationale)
    assert "num_workers=" in a.snippet


def test_not_applicable_without_dataloader():
    assert advise_one("dataloader", llama_plain()).status == "not_applicable"


def test_already_applied_with_workers_that_keep_up():
    # 4 workers at 1 ms a batch deliver one every 0.25 ms: far below the step's compute
    p = replace(gpt_loader_plain(), data=replace(gpt_loader_plain().data, num_workers=4, batch_s=0.001,
                                                 batch_s_lo=0.001, batch_s_hi=0.001, batch_io_s=0.0))
    a = advise_one("dataloader", p)
    assert a.status == "already_applied", a.rationale
