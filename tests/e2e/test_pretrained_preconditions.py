"""Issue 20: finetune and warm_start check their preconditions in the script, through the one
reader of the script, on a real run of a small script."""
from __future__ import annotations

import pytest

from ccprof.advisors import advise_one
from ccprof.hardware import attach
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


def test_pretrained_weights_behind_a_flag_the_run_left_off():
    """A user's report: 'matches no pretrained family' for a script that loads GPT-2 weights under
    `--model gpt2` while the run used another flag. Verdict: turn on what you have."""
    r = run_script(SCRIPTS / "pretrained_behind_flag.py", ["--steps", "10"], steps=3, warmup=1, timeout_s=180)
    assert r.exit_code == 0, r.message
    p = attach(r.profile, gpu="a100-80gb")
    s = p.static
    assert not p.model.pretrained and not s.from_pretrained
    assert s.inactive == {"from_pretrained": 17}
    assert s.switches == {"from_pretrained": ["--steps", "10", "--model", "gpt2"]}
    assert p.model.tied_params == [["transformer.wte.weight", "lm_head.weight"]]
    a = advise_one("finetune", p)
    command = "python pretrained_behind_flag.py --steps 10 --model gpt2"
    assert a.status == "recommended" and a.details["turn_on"]["command"] == command
    assert a.rationale.startswith("Your script already has this (`GPT2LMHeadModel.from_pretrained(...)` at line 17, "
                                  "behind `if args.model == \"gpt2\":` (line 16), set by --model (off in this run)), "
                                  f"and this run left it off: turn it on with `{command}`")
    assert command in a.snippet and "matches no pretrained family" not in a.rationale
    assert a.projected.time_saved_frac == pytest.approx(5 / 6)       # the run less the 1/6 fine-tuning budget
    w = advise_one("warm_start", p)
    assert w.status == "not_applicable" and f"run it `{command}`" in w.rationale
