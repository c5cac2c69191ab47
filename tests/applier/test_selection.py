"""`ccprof apply`'s choices: one ranking (advice.json's, the report's), the higher-ranked tweaks it
passes over named with why (no rewrite, a conflict), `-t` restricting `--from`, and an exit code
that says whether every tweak asked for was written or already there."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ccprof import api
from ccprof.applier.codemods.selection import select_tweaks
from ccprof.artefacts.advice import Advice, AdviceSet, Projected
from ccprof.artefacts.tweaks import TWEAKS, GradAccumulationOptions, MixedPrecisionOptions, conflict
from ccprof.cli import cli
from ccprof.exit_codes import ExitCode

# a plain loop: tf32, mixed_precision, fused_optimizer and compile can be written; warm_start
# (no nn.Embedding) and checkpointing (no repeated blocks) cannot
SCRIPT = """\
import torch
import torch.nn as nn
import torch.nn.functional as F

model = nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(3):
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""


def _advice(*tweaks: str, status: dict[str, str] | None = None,
            options: dict[str, dict] | None = None) -> AdviceSet:
    """Recommended advice ranked in the given order: each saves 10 points of the run's cost
    less than the one before (beyond the 1% tie band, so the ranking cannot reorder them)."""
    status, options = status or {}, options or {}
    return AdviceSet(advice=[
        Advice(tweak=t, status=status.get(t, "recommended"), options=options.get(t, {}),
               projected=Projected(cost_saved_frac=0.9 - 0.1 * i, expected_frac=0.9 - 0.1 * i, usd_saved=90 - 10 * i))
        for i, t in enumerate(tweaks)])


# the report's ranking in the user's report: right_size_gpu, finetune, batch_size first
REPORT = ("right_size_gpu", "finetune", "batch_size", "warm_start", "compile", "tf32")


def test_top_k_takes_the_first_k_with_a_rewrite_and_names_each_higher_ranked_one_passed_over():
    sel = select_tweaks([], _advice(*REPORT, options={"batch_size": {"batch_size": 64}}), 2)
    assert sel.tweaks == ["batch_size", "warm_start"]
    assert sel.options["batch_size"].batch_size == 64                # the advice's own options
    assert list(sel.passed_over) == ["right_size_gpu", "finetune"]
    assert sel.passed_over["right_size_gpu"] == f"no rewrite: {TWEAKS['right_size_gpu'].no_codemod}"
    assert "rent the GPU it names" in sel.passed_over["right_size_gpu"]
    assert sel.places == {"right_size_gpu": 1, "finetune": 2, "batch_size": 3, "warm_start": 4}
    # below the K-th pick: neither picked nor mentioned
    assert "compile" not in sel.places and "tf32" not in sel.places


def test_top_k_passes_over_a_tweak_that_conflicts_with_one_picked_before_it():
    assert conflict("tf32", "mixed_precision")                      # the catalog's pair
    sel = select_tweaks([], _advice("mixed_precision", "tf32", "compile",
                                    options={"mixed_precision": {"dtype": "fp16"}}), 2)
    assert sel.tweaks == ["mixed_precision", "compile"]              # K counts picks, not conflicts
    assert sel.options["mixed_precision"] == MixedPrecisionOptions(dtype="fp16")
    assert sel.passed_over == {"tf32": f"conflicts with mixed_precision (#1, picked): "
                                       f"{conflict('tf32', 'mixed_precision')}"}
    # without --top: every recommended tweak with a rewrite, conflicts still left out, and every
    # one passed over is named, below the last pick too
    sel = select_tweaks([], _advice("grad_accumulation", "tf32", "batch_size", "right_size_gpu"))
    assert sel.tweaks == ["grad_accumulation", "tf32"]
    assert list(sel.passed_over) == ["batch_size", "right_size_gpu"]
    assert sel.passed_over["batch_size"].startswith("conflicts with grad_accumulation (#1, picked): ")


def test_named_tweak_with_from_applies_only_it_with_its_advice_options():
    advice = _advice("mixed_precision", "tf32", "grad_accumulation", options={"grad_accumulation": {"steps": 6}})
    sel = select_tweaks(["grad_accumulation"], advice)
    assert sel.tweaks == ["grad_accumulation"] and not sel.passed_over
    assert sel.options == {"grad_accumulation": GradAccumulationOptions(steps=6)}
    # named tweaks the file does not recommend: applied as asked, the choice stated
    sel = select_tweaks(["compile", "tf32"], _advice("tf32", "compile", status={"compile": "already_applied"}))
    assert sel.tweaks == ["tf32", "compile"]
    assert sel.notes == {"compile": "advice.json does not recommend it (already applied)"}
    sel = select_tweaks(["dataloader"], advice)
    assert sel.notes == {"dataloader": "advice.json has no advice for it: the catalog's default options"}


def test_named_tweaks_that_conflict_are_both_applied_with_the_conflict_stated():
    sel = select_tweaks(["mixed_precision", "tf32"])
    assert sel.tweaks == ["mixed_precision", "tf32"]
    assert sel.notes == {"tf32": f"conflicts with mixed_precision: {conflict('tf32', 'mixed_precision')} "
                                 "(both applied, as named with -t)"}


def test_nothing_with_a_rewrite_in_the_ranking_is_bad_input():
    with pytest.raises(ValueError, match="have no rewrite: right_size_gpu, finetune"):
        select_tweaks([], _advice("right_size_gpu", "finetune"), 1)
    with pytest.raises(ValueError, match="rent the GPU it names"):
        select_tweaks(["right_size_gpu"])


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT, encoding="utf-8")
    return path


def _outcomes(done) -> dict[str, tuple[str, str]]:
    return {o.tweak: (o.outcome, o.reason) for o in done.tweaks}


def test_exit_ok_when_every_tweak_is_written_or_already_there(script, tmp_path):
    done = api.apply_to_file(script, ["tf32", "compile"])
    assert done.exit_code == ExitCode.OK and done.written
    assert _outcomes(done) == {"tf32": ("written", ""), "compile": ("written", "")}
    # the rewrite again, with one more tweak: tf32 is already there (a success, not a failure)
    again = api.apply_to_file(done.out_path, ["tf32", "fused_optimizer"], output=str(tmp_path / "again.py"))
    assert again.exit_code == ExitCode.OK
    assert [(o.tweak, o.outcome) for o in again.tweaks] == [("tf32", "already_present"), ("fused_optimizer", "written")]
    nothing = api.apply_to_file(done.out_path, ["tf32"], output=str(tmp_path / "none.py"))
    assert nothing.exit_code == ExitCode.OK and not nothing.written and not (tmp_path / "none.py").exists()


def test_a_tweak_that_cannot_be_written_is_a_distinct_exit_code_with_its_reason(script, tmp_path):
    done = api.apply_to_file(script, ["tf32", "warm_start"])
    assert done.exit_code == ExitCode.NOT_ALL_APPLIED != ExitCode.OK
    outcome, reason = _outcomes(done)["warm_start"]
    assert outcome == "refused" and "nn.Embedding" in reason
    assert done.written and "allow_tf32" in done.out_path.read_text()     # the others are still written
    none = api.apply_to_file(script, ["checkpointing"], output=str(tmp_path / "none.py"))
    assert none.exit_code == ExitCode.NOT_ALL_APPLIED and not none.written and not (tmp_path / "none.py").exists()


def test_cli_from_top_k_states_its_choices_and_exits_with_the_outcome(script, tmp_path):
    """The user's report: right_size_gpu, finetune, batch_size on top; `--top 3` must not
    silently drop the first two nor rank the rest its own way."""
    path = tmp_path / "advice.json"
    _advice("right_size_gpu", "finetune", "mixed_precision", "tf32", "warm_start", "compile",
            options={"mixed_precision": {"dtype": "fp16"}}).to_json(path)
    res = CliRunner().invoke(cli, ["apply", str(script), "--from", str(path), "--top", "3"])
    assert res.exit_code == ExitCode.NOT_ALL_APPLIED, res.output
    out = res.output
    assert "skipped right_size_gpu (#1 in advice.json's ranking): no rewrite: rent the GPU it names" in out
    assert "skipped finetune (#2 in advice.json's ranking): no rewrite: " in out
    assert "applied mixed_precision (#3 in advice.json's ranking)" in out and "float16" in out
    assert "skipped tf32 (#4 in advice.json's ranking): conflicts with mixed_precision (#3, picked)" in out
    assert "could not write warm_start (#5 in advice.json's ranking): looked for `nn.Embedding(...)`" in out
    assert "applied compile (#6 in advice.json's ranking)" in out
    assert "1 of 3 tweaks asked for could not be written (warm_start)" in out
    # in the order the report shows
    lines = out.splitlines()
    firsts = [next(i for i, line in enumerate(lines) if f" {t} (#" in line)
              for t in ("right_size_gpu", "finetune", "mixed_precision", "tf32", "warm_start", "compile")]
    assert firsts == sorted(firsts)


def test_cli_json_carries_each_tweaks_outcome(script, tmp_path):
    path = tmp_path / "advice.json"
    _advice("right_size_gpu", "tf32", "checkpointing").to_json(path)
    res = CliRunner().invoke(cli, ["apply", str(script), "--from", str(path), "--json",
                                   "-o", str(tmp_path / "out.py")])
    assert res.exit_code == ExitCode.NOT_ALL_APPLIED
    data = json.loads(res.stdout)
    assert data["exit_code"] == int(ExitCode.NOT_ALL_APPLIED) and data["written"] is True
    assert data["output"] == str(tmp_path / "out.py") and "+torch.backends.cuda.matmul.allow_tf32" in data["diff"]
    rows = {r["tweak"]: r for r in data["tweaks"]}
    assert [r["tweak"] for r in data["tweaks"]] == ["right_size_gpu", "tf32", "checkpointing"]
    assert rows["right_size_gpu"]["outcome"] == "skipped" and "rent the GPU" in rows["right_size_gpu"]["reason"]
    assert rows["tf32"] == {"tweak": "tf32", "outcome": "written", "reason": None, "place": 2, "note": None}
    assert rows["checkpointing"]["outcome"] == "refused" and "looked for" in rows["checkpointing"]["reason"]


def test_cli_already_applied_is_success(script, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["apply", str(script), "-t", "tf32", "--in-place"]).exit_code == 0
    res = runner.invoke(cli, ["apply", str(script), "-t", "tf32", "-o", str(tmp_path / "x.py")])
    assert res.exit_code == ExitCode.OK, res.output
    assert "already applied tf32: " in res.output and "the script already has every tweak asked for" in res.output


def test_a_codemod_that_crashes_costs_only_its_own_tweak(script, monkeypatch):
    """A rewrite's own bug on a real script: the other tweaks are still written, the crash is
    that tweak's reason (a ccprof bug, to report), and the exit code says not all were written."""
    from ccprof.applier.codemods import CODEMODS, codemod_ids

    codemod_ids()                                   # every codemod registered before one is swapped

    class Crashes(CODEMODS["compile"]):
        def plan(self, info, edits):
            raise AttributeError("'Name' object has no attribute 'attr'")

    monkeypatch.setitem(CODEMODS, "compile", Crashes)
    done = api.apply_to_file(script, ["tf32", "compile"])
    assert done.exit_code == ExitCode.NOT_ALL_APPLIED and "allow_tf32" in done.out_path.read_text()
    outcome, reason = _outcomes(done)["compile"]
    assert outcome == "refused" and reason.startswith("ccprof's rewrite failed on this script, a ccprof bug")
    assert "AttributeError" in reason
