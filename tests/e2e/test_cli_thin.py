"""The CLI is thin and its answers are the library's: no torch on `import ccprof` or `--help`,
one exit-code table, one ranking for the report, `apply --from --top K` and `--verify N`."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccprof.advisors import rank
from ccprof.applier.codemods import codemod_ids
from ccprof.applier.codemods.selection import select_tweaks
from ccprof.applier.verify import pick_tweaks
from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import conflict, measurable_here
from ccprof.cli import cli
from ccprof.exit_codes import ExitCode
from ccprof.reports.view import build_report_view

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "tests" / "fixtures" / "profile_sample.json"
HEAVY = ("torch", "libcst", "jinja2", "plotly", "rich")


def _loaded_after(code: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_ccprof_and_help_load_no_torch():
    assert _loaded_after("import ccprof") == []
    assert _loaded_after("import ccprof.cli") == []
    for argv in (["--help"], ["apply", "--help"], ["analyze", "--help"]):
        code = ("from ccprof.cli import cli\ntry:\n    cli(%r, prog_name='ccprof')\n"
                "except SystemExit as e:\n    assert e.code == 0, e.code" % (argv,))
        assert _loaded_after(code) == [], argv


def test_help_lists_every_exit_code():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for code in ExitCode:
        assert f"{int(code):>5}  " in res.output, code
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 130, 143]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Exit codes"):]
    for code in ExitCode:
        assert f"\n| {int(code)} | " in table, f"README's exit-code table has no row for {code!r}"
    res = CliRunner().invoke(cli, ["apply", "--help"])
    assert f"{int(ExitCode.NOT_ALL_APPLIED):>5}  some could not be written" in res.output


@pytest.fixture(scope="module")
def advice_json(tmp_path_factory) -> Path:
    """advice.json written by `ccprof advise` (the real advisors) on the sample profile."""
    d = tmp_path_factory.mktemp("advice")
    profile = d / "profile.json"
    profile.write_text(PROFILE.read_text(encoding="utf-8"), encoding="utf-8")
    res = CliRunner().invoke(cli, ["advise", str(profile), "--json"])
    assert res.exit_code == 0, res.output
    return d / "advice.json"


def _ranked_recommended(advice: AdviceSet) -> list[str]:
    return [a.tweak for a in rank(list(advice.advice)) if a.status == "recommended"]


def test_advice_json_is_in_the_reports_order(advice_json):
    advice = AdviceSet.from_json(advice_json)
    shown = [r.tweak for r in build_report_view(Profile.from_json(PROFILE), advice, catalog={}).recommendations]
    assert [a.tweak for a in advice.advice if a.status == "recommended"] == _ranked_recommended(advice) == shown


def test_apply_top_k_is_the_top_k_of_the_ranking_and_names_what_it_passed_over(tmp_path):
    # a saved advice.json whose ranking has tweaks without a rewrite (data_curation, right_size_gpu)
    # between rewritable ones, and rewritable ones that conflict (tf32 after mixed_precision): the
    # cases where sorting another way, or ignoring the catalog's conflicts, would pick another top K
    advice_json = tmp_path / "advice.json"
    advice_json.write_text((ROOT / "tests" / "fixtures" / "advice_sample.json").read_text(encoding="utf-8"))
    advice = AdviceSet.from_json(advice_json)
    ranked, have = _ranked_recommended(advice), set(codemod_ids())
    k = 4
    want: list[str] = []
    for t in ranked:
        if len(want) < k and t in have and not any(conflict(t, c) for c in want):
            want.append(t)
    last = ranked.index(want[-1])
    passed_over = [t for t in ranked[:last] if t not in want]
    assert any(t not in have for t in passed_over), ranked
    script = tmp_path / "cnn.py"
    script.write_text((ROOT / "examples" / "cnn.py").read_text(encoding="utf-8"), encoding="utf-8")
    res = CliRunner().invoke(cli, ["apply", str(script), "--from", str(advice_json), "--top", str(k),
                                   "-o", str(tmp_path / "out.py")])
    assert res.exit_code in (ExitCode.OK, ExitCode.NOT_ALL_APPLIED), res.output
    asked = [t for t in ranked
             if any(f"{verb} {t} (#" in res.output for verb in ("applied", "already applied", "could not write"))]
    assert asked == want, res.output
    for t in passed_over:
        why = "no rewrite: " if t not in have else "conflicts with "
        assert f"skipped {t} (#{ranked.index(t) + 1} in advice.json's ranking): {why}" in res.output
    # below the K-th: neither applied nor mentioned
    for t in ranked[last + 1:]:
        assert t not in res.output, t
    assert select_tweaks([], advice, k).tweaks == want


def test_apply_named_tweak_with_from_restricts_to_it(advice_json, tmp_path):
    script = tmp_path / "cnn.py"
    script.write_text((ROOT / "examples" / "cnn.py").read_text(encoding="utf-8"), encoding="utf-8")
    res = CliRunner().invoke(cli, ["apply", str(script), "--from", str(advice_json), "-t", "tf32",
                                   "-o", str(tmp_path / "out.py")])
    assert res.exit_code == 0, res.output
    assert "applied tf32" in res.output
    assert "mixed_precision" not in res.output and "warm_start" not in res.output, res.output
    res = CliRunner().invoke(cli, ["apply", str(script), "--from", str(advice_json), "-t", "tf32", "--top", "2"])
    assert res.exit_code == ExitCode.BAD_INPUT and "one or the other" in res.output


def test_file_order_does_not_change_the_pick(advice_json):
    """apply and --verify rank what they are given (the one ranking), whatever order a file holds."""
    advice = AdviceSet.from_json(advice_json)
    shuffled = dataclasses.replace(advice, advice=list(reversed(advice.advice)))
    assert select_tweaks([], shuffled, 2) == select_tweaks([], advice, 2)
    picked, skipped = pick_tweaks(shuffled, 2)
    assert (picked, skipped) == pick_tweaks(advice, 2)
    ranked = _ranked_recommended(advice)
    measurable = [t for t in ranked if measurable_here(t, "cuda", True)[0]]
    assert picked == measurable[:2]
    assert list(skipped) == [t for t in ranked[:ranked.index(picked[-1])] if t not in measurable]


def test_report_view_reads_nothing_from_disk(monkeypatch):
    """The view is a pure function of what it is given: the catalog comes in as an argument."""
    import ccprof.hardware
    import ccprof.hardware.catalog

    def refuse(*a, **k):
        raise AssertionError("the report view loaded the catalog itself")

    monkeypatch.setattr(ccprof.hardware, "load_catalog", refuse)
    monkeypatch.setattr(ccprof.hardware.catalog, "load_catalog", refuse)
    fixtures = ROOT / "tests" / "fixtures"
    for name in ("sample", "sparse"):
        profile = Profile.from_json(fixtures / f"profile_{name}.json")
        advice = AdviceSet.from_json(fixtures / f"advice_{name}.json")
        a = build_report_view(profile, advice, generated_at="2026-01-01T00:00:00", catalog={})
        b = build_report_view(profile, advice, generated_at="2026-01-01T00:00:00", catalog={})
        assert a == b
