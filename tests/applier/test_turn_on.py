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
    assert r.skipped["compile"].endswith("run the script with `--steps 8 --compile`")
    assert r.skipped["mixed_precision"].endswith("run the script with `--steps 8 --dtype bfloat16`")


def test_on_in_the_run_is_already_applied():
    r = apply_source(SOURCE, ["compile"], argv=["--compile"])
    assert r.applied == [] and r.already_applied == ["compile"]
    assert "run the script with" not in r.skipped["compile"] and "(on in this run)" in r.skipped["compile"]
