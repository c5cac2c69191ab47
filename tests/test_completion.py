"""`ccprof completion SHELL` prints a completion script, and completion offers GPU ids and tweak ids
(issue 23 item 7). Driven through click's own completion protocol, as the shell calls it."""
from __future__ import annotations

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from ccprof.artefacts.tweaks import TWEAKS
from ccprof.cli import cli


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _ccprof_completion ccprof"),
                                           ("zsh", "#compdef ccprof"),
                                           ("fish", "complete --no-files --command ccprof")])
def test_prints_the_script_for_each_shell(shell, marker):
    res = CliRunner().invoke(cli, ["completion", shell])
    assert res.exit_code == 0, res.output
    assert marker in res.output and "_CCPROF_COMPLETE" in res.output


def test_unknown_shell_is_bad_usage():
    res = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert res.exit_code == 2 and "tcsh" in res.output


def _offers(args: list[str], incomplete: str) -> list[str]:
    return [c.value for c in ShellComplete(cli, {}, "ccprof", "_CCPROF_COMPLETE").get_completions(args, incomplete)]


def test_commands_and_options():
    assert {"analyze", "advise", "apply", "completion"} <= set(_offers([], ""))
    assert "--gpu" in _offers(["analyze", "train.py"], "--g")


def test_gpu_ids_come_from_the_catalog():
    from ccprof import api

    offered = _offers(["analyze", "train.py", "--gpu"], "h1")
    assert offered and set(offered) == {g for g in api.gpu_catalog() if g.startswith("h1")}
    assert set(_offers(["advise", "profile.json", "--gpu"], "")) == set(api.gpu_catalog())


def test_tweak_ids_come_from_the_tweak_catalog():
    assert _offers(["apply", "train.py", "-t"], "mi") == [t for t in TWEAKS if t.startswith("mi")]
    assert set(_offers(["apply", "train.py", "--tweak"], "")) == set(TWEAKS)
