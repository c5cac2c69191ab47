"""Each example profiled in the harness child yields an answer from all 18 advisors, and no two of
them contradict each other (ccprof.advisors.consistency), priced or not."""
from __future__ import annotations

import pytest

from ccprof.advisors import advise
from ccprof.advisors.consistency import contradictions
from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.tweaks import TWEAKS
from tests.helpers.paths import EXAMPLES

EXAMPLE_ARGS = {                        # short runs, as tests/e2e/test_examples_run.py uses them
    "gpt_loop.py": ["--steps", "60", "--eval-every", "30"],
    "hf_trainer.py": ["--steps", "80", "--logging-steps", "10", "--eval-steps", "40"],
    "cnn.py": ["--epochs", "1", "--train-size", "320"],
    "finetune.py": ["--steps", "60"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLE_ARGS))
def test_every_example_yields_all_18(name, tmp_path):
    from ccprof.hardware import attach
    from ccprof.profiler.runner import run_script

    args = EXAMPLE_ARGS[name] + (["--checkpoint", str(tmp_path / "b.pt")] if name == "finetune.py" else [])
    r = run_script(EXAMPLES / name, args, steps=2, warmup=1, timeout_s=240)
    assert r.profile is not None and r.profile.steps.measured == 2, r.message
    _check_module_flops(r.profile)
    profile = attach(r.profile, total_steps=1000)
    s = advise(profile)
    assert sorted(a.tweak for a in s.advice) == sorted(TWEAKS)
    assert AdviceSet.from_json(s.to_json()) == s
    assert contradictions(s, profile) == []
    unsized = attach(r.profile)          # the planned run as the script states it, or unknown
    assert contradictions(advise(unsized), unsized) == []


def _check_module_flops(profile):
    """Per-module FLOPs land where they ran: the modules hold the step's FLOPs (within 1%), blocks
    of one size hold the same (the first may skip its input's gradient), and a Dropout none
    (gpt_loop.py's once held 243 MFLOP of gradient GEMMs)."""
    assert profile.flops.module_frac() >= 0.99
    mods = {m.name: m for m in profile.model.modules}
    for block in profile.model.repeated_blocks:
        by_size: dict[int, set[int]] = {}
        for n in block.names[1:]:
            by_size.setdefault(mods[n].params, set()).add(mods[n].flops)
        assert all(len(f) == 1 for f in by_size.values()), block.container
    assert all(m.flops == 0 for m in profile.model.modules if m.class_ == "Dropout")


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXAMPLE_ARGS)
