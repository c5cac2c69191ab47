"""`ccprof apply` of a tweak the script holds behind an option the run left off (issue 21): nothing
is written twice; the answer is the run's command line with the option on."""
from __future__ import annotations

from ccprof.applier.codemods import apply_source
from tests.helpers.paths import SCRIPTS

SOURCE = (SCRIPTS / "flags_off.py").read_text()


def test_off_in_the_run_gives_the_command_line():
    r = apply_source(SOURCE, ["compile", "mixed_precision"], argv=["--steps", "8"])
    assert r.source == SOURCE and r.applied == []
    assert set(r.already_applied) == {"compile", "mixed_precision"}, r.skipped     # present: nothing to write
    # each tweak's command carries the ones turned on before it (mixed_precision first, APPLY_ORDER),
    # and the result's command is all of them: one command line to run
    assert r.skipped["mixed_precision"].endswith("run the script with `--steps 8 --dtype bfloat16`")
    assert r.skipped["compile"].endswith("run the script with `--steps 8 --dtype bfloat16 --compile`")
    assert r.command == ["--steps", "8", "--dtype", "bfloat16", "--compile"]


def test_on_in_the_run_is_already_applied():
    r = apply_source(SOURCE, ["compile"], argv=["--compile"])
    assert r.applied == [] and r.already_applied == ["compile"]
    assert "run the script with" not in r.skipped["compile"] and "(on in this run)" in r.skipped["compile"]


def test_the_command_says_turn_on_and_exits_ok(tmp_path):
    """The CLI: outcome `turn on` with the command line, exit 0 (the script has the tweak)."""
    import json

    from click.testing import CliRunner

    from ccprof.cli import cli

    script = tmp_path / "flags_off.py"
    script.write_text(SOURCE)
    advice = {"schema": "ccprof.advice/1", "advice": [
        {"tweak": "compile", "status": "recommended", "title": "torch.compile",
         "projected": {"time_saved_frac": 0.3, "memory_saved_bytes": 0, "usd_saved": 1.0}}]}
    profile_argv = ["--steps", "8"]
    (tmp_path / "advice.json").write_text(json.dumps(advice))
    (tmp_path / "profile.json").write_text(json.dumps({"schema": "ccprof.profile/1",
                                                       "environment": {"argv": profile_argv}}))
    r = CliRunner().invoke(cli, ["apply", str(script), "--from", str(tmp_path / "advice.json"), "--json"])
    out = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    (o,) = [o for o in out["tweaks"] if o["tweak"] == "compile"]
    assert o["outcome"] == "turn_on" and o["reason"].endswith("run the script with `--steps 8 --compile`"), o
