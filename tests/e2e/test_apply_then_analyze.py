"""Issue 7's loop closed: `ccprof apply` rewrites a script, `ccprof analyze` on the result
reports each tweak as already applied, with its effect measured in that run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT


def ccprof(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccprof", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("example,tweaks,script_args", [
    ("gpt_loop.py", ["mixed_precision", "checkpointing", "fused_optimizer"], ["--n-layer", "3"]),
    ("hf_trainer.py", ["mixed_precision", "checkpointing"], []),
])
def test_rewritten_script_reports_already_applied(tmp_path, example, tweaks, script_args):
    src = ROOT / "examples" / example
    out_script = tmp_path / example.replace(".py", "_fast.py")
    flags = [x for t in tweaks for x in ("-t", t)]
    r = ccprof("apply", str(src), *flags, "-o", str(out_script), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for t in tweaks:
        assert f"applied {t}" in r.stdout + r.stderr
    data = ROOT / "examples" / "data" / "tiny_corpus.txt"
    extra = ["--data", str(data)] if example == "gpt_loop.py" else []
    r = ccprof("analyze", str(out_script), "--quiet", "--steps", "3", "--warmup", "1", "--out", str(tmp_path / "rep"),
               "--", *script_args, *extra, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    advice = {a["tweak"]: a for a in json.loads((tmp_path / "rep" / "advice.json").read_text())["advice"]}
    profile = json.loads((tmp_path / "rep" / "profile.json").read_text())
    for t in tweaks:
        assert advice[t]["status"] == "already_applied", (t, advice[t]["rationale"])
        # its effect: measured in this run, or (fused_optimizer) the optimizer's share on the target GPU
        assert ("Measured in this run" in advice[t]["rationale"]
                or " its step takes " in advice[t]["rationale"]), (t, advice[t]["rationale"])
    assert profile["precision"]["autocast"] and profile["precision"]["autocast_dtype"] == "bfloat16"
    # the measured effect is real: the counted matmuls ran in bf16
    bf16 = sum(o["flops"] for o in profile["ops"] if o["dtype"] == "bfloat16")
    assert bf16 > 0.5 * profile["flops"]["per_step"]
