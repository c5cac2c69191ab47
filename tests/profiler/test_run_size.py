"""The planned run from the script's own limits (issue 11, misread 1).

In-process: tests/scripts/run_sizes.py runs under runpy with a real global optimizer-step
hook that probes the stack at the first step and stops the script, the way the profiler's
hook does. End to end: two styles through the harness, priced by the hardware stage.
"""
from __future__ import annotations

import re
import runpy
import sys

import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ccprof.artefacts.profile import DataInfo, Profile
from ccprof.hardware import attach, run_steps
from ccprof.profiler import run_size
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS

SCRIPT = SCRIPTS / "run_sizes.py"


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


def _nolines(why: str) -> str:
    return re.sub(r"\.py:\d+\)", ".py)", why)


def planned(limits, spe=None, finite=True):
    """(steps, source) the cost stage reads from these limits; source without line numbers."""
    data = DataInfo(steps_per_epoch=spe, finite=finite if spe else None)
    n, why = run_steps(Profile(run_limits=limits, data=data))
    return n, _nolines(why)


@pytest.mark.parametrize("style,spe,finite,steps,source", [
    ("range", None, None, 300, "loops: range(args.max_iters) (run_sizes.py)"),
    ("while", None, None, 250, "if cfg.max_iters is not None and it >= cfg.max_iters: break"),
    ("epochs", 16, True, 48, "loops: range(args.epochs) (run_sizes.py) x loader"),
    # minGPT/makemore: the sampler's 1e10 draws are not an epoch; the break is the run
    ("infinite", 625_000_000, False, 120, "loops: loader (run_sizes.py) capped by if i >= args.max_steps: break"),
    ("named", None, None, 900, "config.total_steps=900"),
    ("nested", 16, True, 32, "loops: range(n_ep) (run_sizes.py) x loader (run_sizes.py)"),
    ("onepass", 16, True, 16, "one pass of loader (run_sizes.py)"),
    ("none", None, None, 0, "unknown"),
    # one batch an epoch: 4 epochs are 4 steps, not 4 x the loader's 16 batches
    ("peek", 16, True, 4, "loops: range(args.epochs) (run_sizes.py)"),
    ("onebatch", 16, True, 4, "loops: range(args.epochs) (run_sizes.py) x loader (run_sizes.py) capped by "
                              "break (run_sizes.py): one iteration"),
    # range(max_iters + 1) whose last iteration only evaluates: 51 iterations, 50 steps
    ("evallast", None, None, 50, "loops: range(max_iters + 1) (run_sizes.py) capped by if it == max_iters: break"),
    ("stopat", None, None, 10, "loops: range(1000) (run_sizes.py) capped by if it == stop_at: break"),
])
def test_run_size_from_the_loop(style, spe, finite, steps, source):
    n, why = planned(probe_style(style), spe, finite)
    assert n == steps and why.startswith(source), (n, why)


def test_argv_overrides_the_default_through_the_live_value():
    n, why = planned(probe_style("range", "--max-iters", "40"))
    assert n == 40 and "range(args.max_iters)" in why


def test_nested_ranges_multiply_and_a_resumed_counter_leaves_less():
    # gan_1d: for epoch in range(5000): for d_index in range(20): d_optimizer.step()
    n, why = planned(probe_style("gan"))
    assert n == 5000 * 20 and why == "loops: range(num_epochs) (run_sizes.py) x range(d_steps) (run_sizes.py)"
    # llama2.c resumed at iter 100: `if iter_num > max_iters: break` runs iterations 100..1000
    n, why = planned(probe_style("resume"))
    assert n == 901 and why.startswith("if iter_num > max_iters: break")
    # accumulation by modulo: 64 batches, an optimizer step every 4
    n, why = planned(probe_style("modulo"))
    assert n == 16 and "/ 4 (optimizer step under if" in why


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
    # a module is callable: never a value itself, but its attributes are read
    # (Forward-Forward's ``for i in range(self.num_epochs)`` in an nn.Module method)
    import torch

    net = torch.nn.Linear(2, 2)
    net.num_epochs = 7
    assert run_size.safe_eval(ast.parse("net.num_epochs + 1", mode="eval").body, frame) == 8
    with pytest.raises(Exception):
        run_size.safe_eval(ast.parse("net", mode="eval").body, frame)
    with pytest.raises(Exception):
        run_size.safe_eval(ast.parse("net.forward", mode="eval").body, frame)


@pytest.mark.parametrize("style,steps,source", [
    ("infinite", 120, "loops: loader (run_sizes.py) capped by if i >= args.max_steps: break"),
    ("nested", 32, "loops: range(n_ep) (run_sizes.py) x loader (run_sizes.py)"),
])
@pytest.mark.e2e                # the script in the harness child
def test_harness_prices_the_scripts_own_run(style, steps, source):
    r = run_script(SCRIPT, ["--style", style], steps=2, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    p = attach(r.profile, gpu="a100-80gb")
    assert p.cost.run_steps == steps and _nolines(p.cost.run_steps_source).startswith(source)
    assert p.cost.usd_run == pytest.approx(p.cost.usd_per_step * steps)
    if style == "infinite":
        assert p.data.finite is False and p.cost.steps_per_epoch is None
