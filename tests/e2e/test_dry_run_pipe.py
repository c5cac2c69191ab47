"""`ccprof analyze --dry-run --nproc N` on a pipeline-parallel script (torch.distributed.pipelining):
each stage traced as its own rank. On gloo, a real 2-rank run's per-rank peak memory and FLOPs
against the dry run's stages; a world of 4 ranks without them, 4 stages, each costed with its own
inputs, its sends and receives in their phases, and the bubble in the step; the zero-bubble schedules;
a SIGTERM to ccprof while the stages run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.paths import ROOT

SCRIPT = ROOT / "tests" / "scripts" / "pipe_train.py"


def _analyze(tmp_path, name, *extra, script_args=(), quiet=True):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--steps", "2", "--warmup", "1",
                           "--out", str(out), "--gpu", "h100-sxm", *(["-q"] if quiet else []), *extra, "--",
                           "--steps", "6", *script_args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, COLUMNS="400"))     # the terminal's world line on one line
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "profile.json").read_text()), proc.stdout + proc.stderr


def test_each_stage_matches_its_real_rank_on_gloo(tmp_path):
    real, _ = _analyze(tmp_path, "real", "--nproc", "2")
    dry, _ = _analyze(tmp_path, "dry", "--nproc", "2", "--dry-run")
    pipe = dry["dry_run"]["pipeline"]
    assert (pipe["schedule"], pipe["num_stages"], pipe["microbatches"], pipe["stage_rank"]) == \
        ("Schedule1F1B", 2, 4, [0, 1])
    stages = {r["rank"]: r for r in pipe["ranks"]}
    for row in real["ranks"]:
        stage = stages[row["rank"]]
        assert stage["peak_bytes"] == pytest.approx(row["peak_bytes"], rel=0.05), row["rank"]
        assert stage["flops_per_step"] == row["flops_per_step"], row["rank"]
    # the stages differ: the first embeds, the last one computes the head and the loss
    assert stages[0]["flops_per_step"] != stages[1]["flops_per_step"]
    # the profile around them is the stage with the largest peak (it sets the memory per GPU)
    heaviest = max(stages.values(), key=lambda r: (r["reserved_peak_bytes"] or r["peak_bytes"], -r["rank"]))
    assert dry["dry_run"]["rank"] == heaviest["rank"] and dry["memory"]["peak_bytes"] == heaviest["peak_bytes"]
    # activations and gradients cross between the two GPUs: send/receive rows on both stages
    for stage in stages.values():
        p2p = {o["op"] for o in stage["ops"] if o["op"].startswith("c10d.")}
        assert p2p == {"c10d.send", "c10d.recv_"}


def test_four_stages_on_four_ranks_and_the_bubble_in_the_step(tmp_path):
    # a vocabulary of 32768: the last stage's head (128 x 32768 + 32768) holds 4.2M of its 4.5M parameters, the
    # first's embedding as many, the middle stages 264K each
    dry, stdout = _analyze(tmp_path, "dry4", "--nproc", "4", "--dry-run", script_args=("--microbatches", "8",
                                                                                       "--vocab", "32768"),
                           quiet=False)
    pipe = dry["dry_run"]["pipeline"]
    assert pipe["stage_rank"] == [0, 1, 2, 3] and [r["stages"] for r in pipe["ranks"]] == [[0], [1], [2], [3]]
    detail = dry["projection"]["h100-sxm"]["detail"]["pipeline"]
    # 1F1B, p = 4, m = 8: (p - 1) / (m + p - 1) = 3/11 of the pipelined time
    assert detail["bubble_frac"] == pytest.approx(3 / 11)
    assert 0 < detail["bubble_step_frac"] < 3 / 11
    assert "Pipeline of 4 stages x 8 microbatches (1F1B): bubble" in stdout
    # each rank is costed with its own optimizer (over its own stage's parameters), host counts and memory
    ranks = {r["rank"]: r for r in pipe["ranks"]}
    for r, row in ranks.items():
        assert [o["param_count"] for o in row["optimizers"]] == [row["params"]], r
        assert row["host"]["module_calls_per_step"] > 0
        assert detail["rank_peak_bytes"][str(r)] == (row["reserved_peak_bytes"] or row["peak_bytes"])
    assert ranks[3]["params"] > 10 * ranks[1]["params"]
    opt_s = {int(r): ph["optimizer"] for r, ph in detail["rank_phase_s"].items()}
    assert opt_s[1] == opt_s[2] < opt_s[3]          # the middle stages are alike; the head's optimizer step is longer
    assert ranks[3]["peak_bytes"] > 10 * ranks[1]["peak_bytes"]
    assert "by rank, pipelined work / optimizer / peak memory: 0 " in stdout
    # each send and receive in its schedule action's phase, one a microbatch: activations forward (rank r
    # receives from r - 1, sends to r + 1), gradients backward (the other way), none left in "other"
    for r, row in ranks.items():
        p2p: dict = {}
        for o in row["ops"]:
            if o["op"] in ("c10d.send", "c10d.recv_"):
                p2p[(o["op"], o["phase"])] = p2p.get((o["op"], o["phase"]), 0) + o["count"]
        expected = {}
        if r > 0:
            expected |= {("c10d.recv_", "forward"): 8, ("c10d.send", "backward"): 8}
        if r < 3:
            expected |= {("c10d.send", "forward"): 8, ("c10d.recv_", "backward"): 8}
        assert p2p == expected, r


def test_a_stage_that_fails_early_ends_the_dry_run_with_its_error_not_the_timeout(tmp_path):
    # rank 1 raises before its first step; stage 0 waits for rank 1's gradients' shapes: it stops when rank 1
    # fails, long before --timeout (600 s; this test gives the whole run 300 s)
    out = tmp_path / "failed"
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--steps", "2", "--warmup", "1",
                           "--out", str(out), "--gpu", "h100-sxm", "-q", "--nproc", "2", "--dry-run",
                           "--timeout", "600", "--", "--steps", "6", "--fail-rank", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "rank 1 failed before its first step" in said, said[-3000:]
    assert "timed out" not in said and "no message from rank" not in said


def test_the_stages_start_where_the_run_started_name_their_rank_and_leave_a_shared_log_as_it_was(tmp_path):
    # the script changes into "work" before its pipeline is found; each stage's script, started where the run
    # started, changes into it again (started in "work", it would find no "work/work")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "train.log").write_text("epoch 3\n")        # every stage appends its steps to it
    # a vocabulary of 8192 makes the last stage the heaviest: its logits (16, 32, 8192) fp32 are 16 MiB
    dry, _ = _analyze(tmp_path, "moved", "--nproc", "2", "--dry-run", script_args=("--chdir", "work",
                                                                                   "--vocab", "8192", "--log",
                                                                                   "train.log"))
    assert dry["error"] is None and [r["rank"] for r in dry["dry_run"]["pipeline"]["ranks"]] == [0, 1]
    # the profile around the stages is rank 1's, and says so
    assert dry["dry_run"]["rank"] == dry["rank"] == 1
    # both stages appended to the log at once; it is back as it was
    assert (tmp_path / "work" / "train.log").read_text() == "epoch 3\n"


@pytest.mark.parametrize("flag, schedule, stage_rank, bubble", [
    # ZB-H1 on 2 looped stages a rank: a third of the interleaved fill and drain, (p - 1) / (3 v) = 1/6 of a
    # slot, over m + 1/6: (1/6) / (4 + 1/6) = 1/25
    ("zb", "ScheduleInterleavedZeroBubble", [0, 1, 0, 1], 1 / 25),
    # ZB-V: stages in a V (rank 0 holds the first and the last), no bubble under equal F, B and W passes
    ("zbv", "ScheduleZBVZeroBubble", [0, 1, 1, 0], 0.0),
])
def test_a_zero_bubble_schedule_is_traced_and_costed_by_its_own_bubble_rule(tmp_path, flag, schedule, stage_rank,
                                                                            bubble):
    import torch.distributed.pipelining as pipelining

    from ccprof.hardware.pipeline import bubble_frac
    if not hasattr(pipelining, schedule):
        pytest.skip(f"this torch's torch.distributed.pipelining has no {schedule}")
    dry, stdout = _analyze(tmp_path, flag, "--nproc", "2", "--dry-run", script_args=("--schedule", flag,
                                                                                     "--microbatches", "4"),
                           quiet=False)
    assert dry["error"] is None
    pipe = dry["dry_run"]["pipeline"]
    assert (pipe["schedule"], pipe["stage_rank"], pipe["microbatches"]) == (schedule, stage_rank, 4)
    detail = dry["projection"]["h100-sxm"]["detail"]["pipeline"]
    assert detail["chunks_per_rank"] == 2 and detail["bubble_frac"] == pytest.approx(bubble)
    assert detail["bubble_frac"] == pytest.approx(bubble_frac(schedule, 2, 4, 2))
    assert detail["rule"].startswith("zero bubble (ZB-V)" if flag == "zbv" else "ZB-H1")
    # the weight gradients' passes are traced: each rank's backward does twice its forward's FLOPs
    for row in pipe["ranks"]:
        by_phase: dict = {}
        for o in row["ops"]:
            by_phase[o["phase"]] = by_phase.get(o["phase"], 0) + o["flops"]
        assert by_phase["backward"] == 2 * by_phase["forward"], row["rank"]
    # the step: the slowest rank's pipelined work stretched by the bubble, then the slowest optimizer step
    proj = dry["projection"]["h100-sxm"]
    slowest = detail["rank_work_s"][str(detail["slowest_rank"])]
    optimizer = max(ph["optimizer"] for ph in detail["rank_phase_s"].values())
    data = max(ph["data"] for ph in detail["rank_phase_s"].values())
    assert proj["step_s"] == pytest.approx(slowest / (1 - bubble) + optimizer + data)
    assert "(" + schedule.removeprefix("Schedule") + "): bubble" in stdout


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _wait_for_lines(proc, pattern: str, count: int, deadline_s: float) -> list[str]:
    """``proc``'s stdout lines until ``count`` of them contain ``pattern``: each read waits on the pipe
    (select) for what is left of ``deadline_s``; a failure when the deadline passes or the run ends first."""
    import re
    import select
    import time
    end = time.monotonic() + deadline_s
    buf, hits = b"", []
    while len(hits) < count:
        left = end - time.monotonic()
        assert left > 0, f"no {count} lines matching {pattern!r} within {deadline_s:g} s: {buf[-2000:]!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, f"the run ended (exit code {proc.wait()}) before {count} lines matching {pattern!r}: {buf!r}"
        buf += chunk
        hits = re.findall(pattern, buf.decode("utf-8", "replace"))
    return hits


@pytest.mark.skipif(not hasattr(__import__("signal"), "pause") or not os.path.isdir("/proc"),
                    reason="the stages wait in signal.pause() and are looked up in /proc: POSIX with procfs only")
def test_sigterm_to_ccprof_reaches_every_stage_and_puts_the_users_files_back(tmp_path):
    import signal
    (tmp_path / "work").mkdir()
    log = tmp_path / "work" / "train.log"
    log.write_text("epoch 3\n")             # both stages append their first step to it, then hold
    out = tmp_path / "held"
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--steps", "2", "--warmup",
                                 "1", "--out", str(out), "--gpu", "h100-sxm", "-q", "--nproc", "2", "--dry-run", "--",
                                 "--steps", "6", "--chdir", "work", "--log", "train.log", "--hold-at", "0"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=err)
        try:
            # the event: each stage (rank 0's and rank 1's dry runs) logged its step and says it holds
            held = _wait_for_lines(proc, r"rank (\d) holding pid (\d+)", 2, deadline_s=300)
            assert sorted(r for r, _ in held) == ["0", "1"]
            assert log.read_text() != "epoch 3\n"           # the stages' appends are there while they run
            proc.send_signal(signal.SIGTERM)                # to ccprof alone: it stops rank 0's harness, which
            code = proc.wait(timeout=300)                   # passes it on to the stages (run_stages)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    said = (tmp_path / "stderr.txt").read_text()
    # the documented exit code of a run stopped by SIGTERM (ccprof.exit_codes.ExitCode.TERMINATED)
    assert code == 143, said[-3000:]
    assert not [pid for _, pid in held if _running(int(pid))]
    # each stage caught the SIGTERM and wrote what it had (one SIGKILLed would have written no profile)
    profile = json.loads((out / "profile.json").read_text())
    assert profile["error"]["kind"] == "terminated" and "stopped by SIGTERM" in profile["error"]["message"]
    assert [r["rank"] for r in profile["dry_run"]["pipeline"]["ranks"]] == [0, 1]
    # the stages' journals undone: the log they both appended to is as it was, and nothing else is left there
    assert log.read_text() == "epoch 3\n"
    assert sorted(os.listdir(tmp_path / "work")) == ["train.log"]
