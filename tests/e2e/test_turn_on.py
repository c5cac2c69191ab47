"""A tweak the script already has behind an option that the profiled run left off is advised as
"turn on what you have", with the command line that does it (issue 20)."""
from __future__ import annotations

import pytest

from ccprof.advisors import advise
from ccprof.hardware import attach
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


@pytest.fixture(scope="module")
def advice():
    r = run_script(SCRIPTS / "flags_off.py", ["--steps", "8"], steps=3, warmup=1, timeout_s=180)
    assert r.exit_code == 0, r.message
    profile = attach(r.profile, gpu="h100-sxm", total_steps=100_000)
    return profile, advise(profile).by_tweak()


def test_the_facts_are_off_with_their_switch(advice):
    profile, _ = advice
    st = profile.static
    assert not st.autocast and not st.compile
    assert st.switches["compile"] == ["--steps", "8", "--compile"]
    assert st.switches["autocast"] == ["--steps", "8", "--dtype", "bfloat16"]


@pytest.mark.parametrize("tweak,command", [
    ("mixed_precision", "python flags_off.py --steps 8 --dtype bfloat16"),
    ("compile", "python flags_off.py --steps 8 --compile"),
])
def test_advised_as_turn_it_on(advice, tweak, command):
    _, by = advice
    a = by[tweak]
    assert a.status in ("recommended", "no_saving"), a.rationale      # projected like any absent tweak
    assert a.status != "already_applied"
    assert a.details["turn_on"]["command"] == command
    assert a.rationale.startswith("Your script already has this (") and command in a.rationale
    assert command in a.snippet and "torch.compile(model)" not in a.snippet.replace(command, "")
