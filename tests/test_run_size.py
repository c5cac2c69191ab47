"""The planned run from the script's own limits (issue 11, misread 1).

In-process: tests/scripts/run_sizes.py runs under runpy with a real global optimizer-step
hook that probes the stack at the first step and stops the script, the way the profiler's
hook does. End to end: two styles through the harness, priced by the hardware stage.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ccprof.hardware import attach, run_steps
from ccprof.profiler import run_size
from ccprof.profiler.profile import DataInfo, Profile
from ccprof.profiler.runner import run_script

SCRIPT = Path(__file__).parent / "scripts" / "run_sizes.py"


class _Stop(BaseException):
    pass


def probe_style(style: str, *argv: str) -> list:
    found: list = []

    def hook(opt, args, kwargs):
        found.extend(run_size.probe(sys._getframe(1)))
        raise _Stop

    handle = register_optimizer_step_pre_hook(hook)
    old = sys.argv
    sys.argv = [str(SCRIPT), "--style", style, *argv]
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    except _Stop:
        pass
    finally:
        sys.argv = old
        handle.remove()
    return found


def planned(limits, spe=None, finite=True):
    data = DataInfo(steps_per_epoch=spe, finite=finite if spe else None)
    return run_steps(Profile(run_limits=limits, data=data))


@pytest.mark.parametrize("style,spe,finite,steps,source", [
    ("range", None, None, 300, "for ... in range(args.max_iters)"),
    ("while", None, None, 250, "if cfg.max_iters is not None and it >= cfg.max_iters: break"),
    ("epochs", 16, True, 48, "for ... in range(args.epochs)"),
    # minGPT/makemore: the sampler's 1e10 draws are not an epoch; the break is the run
    ("infinite", 625_000_000, False, 120, "if i >= args.max_steps: break"),
    ("named", None, None, 900, "config.total_steps=900"),
    ("nested", 16, True, 32, "for ... in range(n_ep)"),
    ("onepass", 16, True, 16, "one pass of for ... in loader"),
    ("none", None, None, 0, "unknown"),
])
def test_run_size_from_the_loop(style, spe, finite, steps, source):
    n, why = planned(probe_style(style), spe, finite)
    assert n == steps and why.startswith(source), (n, why)


def test_argv_overrides_the_default_through_the_live_value():
    n, why = planned(probe_style("range", "--max-iters", "40"))
    assert n == 40 and "range(args.max_iters)" in why


def test_safe_eval_runs_no_code():
    import ast

    frame = sys._getframe()
    calls = []
    boom = lambda: calls.append(1)                          # noqa: E731,F841
    xs = [1, 2]                                             # noqa: F841
    with pytest.raises(Exception):
        run_size.safe_eval(ast.parse("boom()", mode="eval").body, frame)
    assert run_size.safe_eval(ast.parse("len(xs) * 3", mode="eval").body, frame) == 6
    assert not calls


@pytest.mark.parametrize("style,steps,source", [
    ("infinite", 120, "if i >= args.max_steps: break"),
    ("nested", 32, "for ... in range(n_ep)"),
])
def test_harness_prices_the_scripts_own_run(style, steps, source):
    r = run_script(SCRIPT, ["--style", style], steps=2, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    p = attach(r.profile, gpu="a100-80gb")
    assert p.cost.run_steps == steps and p.cost.run_steps_source.startswith(source)
    assert p.cost.usd_run == pytest.approx(p.cost.usd_per_step * steps)
    if style == "infinite":
        assert p.data.finite is False and p.cost.steps_per_epoch is None
