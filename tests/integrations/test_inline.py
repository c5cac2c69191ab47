"""``ccprof.profile()`` around a loop of the user's own, and the Session mode under it that detaches
after the measured steps instead of stopping the run. Real tiny models, in-process."""
from __future__ import annotations

import json

import pytest
import torch
from torch.nn.modules import module as module_mod
from torch.optim import optimizer as optim_mod

import ccprof
from ccprof.exit_codes import CcprofError
from ccprof.profiler.hooks import Session

STEPS, WARMUP = 3, 1
PLANNED = WARMUP + 3 + STEPS        # warm-up, the FLOP, memory and Python passes, the timed steps


def _model() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _train(model, opt, iterations: int, seen: list[int], fail_at: int | None = None) -> None:
    for i in range(iterations):
        if i == fail_at:
            raise KeyError("the user's own bug")
        x, y = torch.randn(8, 32), torch.randint(0, 4, (8,))
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        seen.append(i)


def _hook_counts() -> tuple[int, int, int, int]:
    return (len(optim_mod._global_optimizer_pre_hooks), len(optim_mod._global_optimizer_post_hooks),
            len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks))


def test_the_loop_runs_every_iteration_and_the_profile_has_its_steps_and_costs(tmp_path):
    model, opt = _model()
    before, backward = _hook_counts(), torch.Tensor.backward
    seen: list[int] = []
    with ccprof.profile(steps=STEPS, warmup=WARMUP, gpu="h100-sxm", total_steps=1000) as prof:
        _train(model, opt, 30, seen)
    assert seen == list(range(30))                      # not stopped after the measured steps
    p = prof.profile
    assert p.status == "complete" and p.error is None
    assert len(p.steps.step_s) >= STEPS                 # extra timed steps when the spread asks for them
    # 8 x (32x64 + 64x4) multiply-adds forward = 36 864 FLOPs... x 2 (FLOPs per MAC) x 3 (fwd + 2 bwd)
    # minus the first layer's input gradient (its input needs none): 8*2*(3*(2048+256) - 2048) = 77 824
    assert p.flops.per_step == 77_824
    assert p.cost.gpu == "h100-sxm" and p.cost.usd_per_step > 0 and p.cost.run_steps == 1000
    assert p.projection["h100-sxm"].step_s > 0
    assert _hook_counts() == before and torch.Tensor.backward is backward     # nothing of ccprof left
    html = prof._repr_html_()
    assert html.lstrip().lower().startswith("<!doctype html") and "</html>" in html
    paths = prof.write(tmp_path / "r")
    assert sorted(p.name for p in paths.values()) == ["advice.json", "profile.json", "report.html"]
    assert json.loads((tmp_path / "r" / "profile.json").read_text())["cost"]["gpu"] == "h100-sxm"
    assert prof.advice.advice and {a.tweak for a in prof.advice.advice} >= {"mixed_precision", "right_size_gpu"}


def test_a_loop_that_ends_first_gives_a_partial_profile_that_says_why():
    model, opt = _model()
    seen: list[int] = []
    with ccprof.profile(steps=STEPS, warmup=WARMUP, gpu="a100-80gb") as prof:
        _train(model, opt, 3, seen)
    assert seen == [0, 1, 2]
    p = prof.profile
    assert p.status == "partial"
    assert p.error.message == f"the loop ended after 3 of {PLANNED} steps ({WARMUP} warm-up + measurement)"
    assert "<html" in prof._repr_html_().lower()


def test_the_loops_own_exception_goes_on_and_the_profile_is_kept():
    model, opt = _model()
    before = _hook_counts()
    with pytest.raises(KeyError, match="the user's own bug"):
        with ccprof.profile(steps=STEPS, warmup=WARMUP) as prof:
            _train(model, opt, 10, [], fail_at=2)
    assert prof.profile.status == "partial" and prof.profile.error.message.startswith("the loop raised KeyError after 2 of")
    assert _hook_counts() == before


def test_a_detached_session_is_a_noop_and_its_optimizer_hooks_go_at_the_next_forward():
    model, opt = _model()
    before, backward = _hook_counts(), torch.Tensor.backward
    done: list[int] = []
    session = Session(steps=1, warmup=1, passes=False, keep_running=True,
                      on_complete=lambda: done.append(session.step_index)).install()
    seen: list[int] = []
    try:
        for i in range(2):           # the second optimizer step ends the measurement, inside its post hook
            _train(model, opt, 1, seen)
        assert done == [2] and session.hooks.detached
        # the module hooks and patches went at once (one forward pre hook is the janitor); the
        # optimizer's are still in torch's dicts (removing them from inside the hook torch was
        # iterating is not safe)
        pre, post, fwd_pre, fwd = _hook_counts()
        assert (fwd_pre, fwd) == (before[2] + 1, before[3]) and (pre, post) == (before[0] + 1, before[1] + 1)
        assert torch.Tensor.backward is backward
        steps = len(session.log.step_s)
        _train(model, opt, 3, seen)  # the next forward removes them; the steps are not counted
        assert _hook_counts() == before and len(session.log.step_s) == steps and session.step_index == 2
    finally:
        session.uninstall()
    assert seen == [0] * 2 + [0, 1, 2] and _hook_counts() == before


def test_profile_model_with_a_gpu_returns_costs():
    model, opt = _model()
    batches = [(torch.randn(8, 32), torch.randint(0, 4, (8,))) for _ in range(4)]
    p = ccprof.profile_model(model, opt, batches, torch.nn.functional.cross_entropy, steps=2, warmup=1,
                             gpu="l4")
    assert p.cost.gpu == "l4" and p.cost.usd_per_step > 0
    assert ccprof.profile_model(model, opt, batches, torch.nn.functional.cross_entropy, steps=2,
                                warmup=1).cost is None


def test_a_gpu_the_catalog_lacks_is_refused_before_the_loop_runs():
    with pytest.raises(CcprofError, match="no-such-gpu"):
        ccprof.profile(gpu="no-such-gpu")
    with pytest.raises(CcprofError, match="--price"):
        ccprof.profile(price=-1.0)
