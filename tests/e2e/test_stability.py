"""Same script, same numbers: two analyses of one script project the same seconds; compare says
"no significant change"; --verify measures the DataLoader tweaks it applies; a run ended by a
signal names who sent it. Real scripts in subprocesses (tests/scripts/, examples/)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccprof.profiler.runner import run_script, who_sent
from tests.helpers.paths import ROOT

EXAMPLES = ROOT / "examples"
SCRIPTS = ROOT / "tests" / "scripts"

pytestmark = pytest.mark.slow


def _ccprof(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccprof", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_two_analyses_project_the_same_seconds_and_compare_says_no_change(tmp_path):
    out = tmp_path / "report"
    for _ in range(2):       # the second run moves the first into report/runs/<time>/
        proc = _ccprof("analyze", str(EXAMPLES / "gpt_loop.py"), "--quiet", "--steps", "3", "--warmup", "1",
                       "--out", str(out), "--", "--steps", "40")
        assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads(next((out / "runs").glob("*/profile.json")).read_text())
    second = json.loads((out / "profile.json").read_text())
    # every catalog GPU: the same projected step, to the last digit (counts priced on one host)
    assert {g: p["step_s"] for g, p in first["projection"].items()} == \
           {g: p["step_s"] for g, p in second["projection"].items()}
    a1 = json.loads(next((out / "runs").glob("*/advice.json")).read_text())
    a2 = json.loads((out / "advice.json").read_text())
    assert [a["tweak"] for a in a1["advice"] if a["status"] == "recommended"] == \
           [a["tweak"] for a in a2["advice"] if a["status"] == "recommended"]
    proc = _ccprof("compare", "--dir", str(out), "--json", "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    view = json.loads(proc.stdout)
    assert view["verdict"].startswith("no significant change"), view
    assert not any(r["significant"] for r in view["rows"])
    step = next(r for r in view["rows"] if r["metric"] == "step time")
    assert step["change"] == "no change" and step["better"] is None
    # each side is named: when it finished, the script and its arguments, GPU, price, version
    before, after = view["runs"]
    assert before["side"] == "before" and after["side"] == "after"
    assert before["script"].endswith("gpt_loop.py") and before["args"] == "--steps 40"
    assert before["gpu"] == "a100-80gb" and before["price"].startswith("$3.43/GPU-hour")
    assert before["finished_at"] < after["finished_at"] and before["ccprof"]
    html = (out / "compare.html").read_text()
    assert "no significant change" in html and "noise band" in html


def test_verify_2_on_the_cnn_example_measures_both_dataloader_tweaks(tmp_path):
    # a batch of 4 made in the main process: the DataLoader's settings and the batch size are the
    # top measurable tweaks, and both are applied by the DataLoader hook before the first batch
    proc = _ccprof("analyze", str(EXAMPLES / "cnn.py"), "--verify", "2", "--steps", "3", "--warmup", "1",
                   "--out", str(tmp_path / "r"), "--", "--batch-size", "4", "--num-workers", "0", "--epochs", "1",
                   timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    advice = json.loads((tmp_path / "r" / "advice.json").read_text())
    ver = advice["verification"]
    assert sorted(ver["measured"]) == ["batch_size", "dataloader"] and ver["failed"] == {}, ver
    # the ones it cannot measure here are said, with why, before any re-run starts
    assert "right_size_gpu" in ver["not_measurable"]
    assert proc.stderr.index("not measurable here") < proc.stderr.index("verifying")
    for a in advice["advice"]:
        if a["tweak"] in ("batch_size", "dataloader"):
            m = a["measured"]
            assert not m["failed"] and m["clock"] == "cpu" and m["time_band_frac"] is not None
            assert "CPU" in m["note"]


def test_the_data_wait_comes_from_the_workers_own_clock():
    r = run_script(SCRIPTS / "workers.py", [], steps=3, warmup=1, timeout_s=240)
    assert r.exit_code == 0, r.message
    d = r.profile.data
    assert d.batch_clock == "thread_cpu" and d.batch_s and d.batch_s > 0
    assert "inside the 2 DataLoader workers" in d.batch_s_method
    assert d.batch_s_lo <= d.batch_s_hi


def test_a_script_that_ends_while_more_steps_are_timed_is_measured_in_full():
    # 1 warm-up + 3 passes + 3 asked-for steps = 7; the script makes exactly 8: its uneven steps
    # make ccprof want more, and the script ends first
    r = run_script(SCRIPTS / "uneven_steps.py", ["8"], steps=3, warmup=1, timeout_s=240)
    assert r.exit_code == 0, r.message
    assert r.profile.status == "complete" and r.profile.error is None
    assert r.profile.steps.measured >= 3
    assert r.profile.host.opcodes["other"] > 0          # the python pass counted the loop's glue


def test_a_signal_ccprof_did_not_send_is_said(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text("import os, signal, torch\nm = torch.nn.Linear(2, 1)\nopt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
                      "for step in range(100):\n    m(torch.ones(1, 2)).sum().backward()\n    opt.step()\n"
                      "    if step == 6:\n        os.kill(os.getpid(), signal.SIGKILL)\n")
    r = run_script(script, [], steps=3, warmup=1, timeout_s=240)
    assert r.exit_code == 3
    assert "signal 9 (SIGKILL" in r.message and "not sent by ccprof" in r.message, r.message


def test_who_sent_reads_ccprofs_own_log():
    sent = [("SIGTERM", "the --timeout of 5 s"), ("SIGKILL", "the --timeout of 5 s, and the script had not ended 3 s after the signal")]
    assert who_sent(9, sent, None) == "sent by ccprof: the --timeout of 5 s, and the script had not ended 3 s after the signal"
    assert who_sent(15, sent, None) == "sent by ccprof: the --timeout of 5 s"
    assert who_sent(11, [], None).startswith("not sent by ccprof")
