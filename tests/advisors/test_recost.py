"""Advice from evidence: no advisor holds a time-saved constant; every time saving is the step
re-costed by the hardware stage's cost model (a data-bound script's wait reaching the GPU is
tests/e2e/test_data_bound.py)."""
from __future__ import annotations

import ast

import pytest
import torch

from ccprof.advisors import advise
from ccprof.api import profile_model
from ccprof.hardware import attach
from tests.helpers.paths import ROOT

ADVISORS = ROOT / "ccprof" / "advisors"
SUSPECT = ("SPEEDUP", "GAIN", "SAVED", "FASTER", "HIDDEN", "OVERHEAD", "EXPOSED")


def _assigned_numbers(tree: ast.Module) -> list[tuple[str, int]]:
    """Module-level constants named like a speed-up and bound to a non-zero number."""
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if (isinstance(node.value, ast.Constant) and isinstance(node.value.value, (int, float))
                    and node.value.value != 0):
                for t in targets:
                    if isinstance(t, ast.Name) and any(k in t.id.upper() for k in SUSPECT):
                        out.append((t.id, node.lineno))
    return out


def _literal_time_savings(tree: ast.AST) -> list[int]:
    """Lines passing a non-zero number literally as ``time_saved_frac=``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                v = kw.value
                if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub):
                    v = v.operand
                if kw.arg == "time_saved_frac" and isinstance(v, ast.Constant) and v.value not in (0, 0.0):
                    out.append(node.lineno)
    return out


@pytest.mark.parametrize("path", sorted(ADVISORS.glob("*.py")), ids=lambda p: p.name)
def test_no_advisor_holds_a_time_saved_constant(path):
    tree = ast.parse(path.read_text())
    assert _assigned_numbers(tree) == [], f"{path.name}: a speed-up constant; re-cost the op list instead"
    assert _literal_time_savings(tree) == [], f"{path.name}: a literal time_saved_frac"


def test_the_check_catches_what_it_looks_for():
    tree = ast.parse("COMPILE_SPEEDUP_MAX = 1.41\nx = make_advice(time_saved_frac=0.3)\n")
    assert _assigned_numbers(tree) == [("COMPILE_SPEEDUP_MAX", 1)]
    assert _literal_time_savings(tree) == [2]


def _tiny_linear():
    """The case the issue named: one Linear(20, 1)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 1)
    x, y = torch.randn(16, 20), torch.randn(16, 1)
    return profile_model(model, torch.optim.SGD(model.parameters(), lr=0.1), [(x, y)],
                         torch.nn.functional.mse_loss, steps=2, warmup=1)


def test_a_single_tiny_linear_gets_no_templated_savings():
    p = attach(_tiny_linear(), gpu="a100-80gb", total_steps=1000)
    out = {a.tweak: a for a in advise(p).advice}
    # nothing to prune (no repeated blocks) and a launch-bound step compile cannot shrink by a constant
    assert out["pruning"].status == "not_applicable"
    assert out["compile"].projected.time_saved_frac != pytest.approx(0.291, abs=0.01)
    for a in out.values():
        assert a.projected.time_saved_frac != pytest.approx(0.30, abs=1e-4), a.tweak


def test_every_time_saving_is_a_re_cost():
    from tests.helpers.profiles import gpt_plain, priced

    p = priced(gpt_plain())
    seen = 0
    for a in advise(p).advice:
        d = a.details
        if a.status != "recommended" or "step_s_before_model" not in d or "step_s_after_model" not in d:
            continue
        seen += 1
        if a.tweak == "batch_size":       # per sample: the larger batch's step over its samples
            want = 1 - d["per_sample_s_after"] / d["per_sample_s_before"]
        elif a.tweak == "grad_accumulation":
            want = 1 - d["step_s_after_model"] / d["step_s_whole_model"]
        else:
            want = 1 - d["step_s_after_model"] / d["step_s_before_model"]
        assert a.projected.time_saved_frac == pytest.approx(want, abs=1e-5), a.tweak
    assert seen >= 3


def test_a_pipelines_tweak_is_costed_on_the_scheduled_step():
    """A traced pipeline's step is its ranks' costs scheduled: a tweak's before and after are the
    scheduled steps (every rank under the tweak's policy), the before equal to the projection's."""
    from dataclasses import replace

    from ccprof.advisors import AdviceContext
    from ccprof.advisors._common import recost
    from ccprof.artefacts.profile import DryRun, Pipeline, PipelineRank
    from ccprof.hardware import attach, load_catalog
    from ccprof.hardware.projection import step_cost_for
    from tests.helpers.profiles import hand_ops, hand_profile
    light = hand_ops()
    heavy = [replace(o, count=2 * o.count, flops=2 * o.flops) for o in light]
    pipe = Pipeline(schedule="Schedule1F1B", microbatches=4, num_stages=2, stage_rank=[0, 1],
                    ranks=[PipelineRank(rank=0, ops=light), PipelineRank(rank=1, ops=heavy)])
    p = attach(hand_profile(world_size=2, dry_run=DryRun(nproc=2, rank=0, pipeline=pipe)), gpu="a100-80gb")
    rc = recost(p, AdviceContext(gpu="a100-80gb"), policy={"autocast": "bfloat16"})
    assert rc.before.step_s == pytest.approx(p.projection["a100-80gb"].step_s)
    # the slower rank 1 paces the pipeline, its forward and backward stretched by 5/4: well over rank 0's own step
    assert rc.before.step_s > 1.25 * step_cost_for(p, load_catalog()["a100-80gb"]).step_s
    assert sum(rc.before.phase_s.values()) == pytest.approx(rc.before.step_s)
    assert 0 < rc.after.step_s < rc.before.step_s
