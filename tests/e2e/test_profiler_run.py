"""The harness on real scripts: step detection, the stop, and every bad-input case.

Each test runs a real training script in the harness child (tests/scripts/, examples/):
no mocks, tiny models, few steps.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ccprof.artefacts.profile import Profile
from ccprof.profiler.runner import ScriptError, check_script, run_script
from tests.helpers.paths import ROOT

SCRIPTS = ROOT / "tests" / "scripts"
EXAMPLES = ROOT / "examples"
FAST = dict(steps=3, warmup=1, timeout_s=120)


def run(name: str, *args: str, **kw):
    opts = {**FAST, **kw}
    return run_script(SCRIPTS / name, list(args), **opts)


def cli(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccprof", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


# ---------------------------------------------------------------- step detection

def test_plain_loop_steps_and_losses():
    r = run("swallow.py")      # also: `except Exception: pass` around each step cannot eat the stop
    assert r.exit_code == 0, r.message
    p = r.profile
    assert p.status == "complete" and p.error is None
    # at least the steps asked for; more (up to twice) while the step's spread is unknown
    assert 3 <= p.steps.measured <= 6 and len(p.steps.step_s) == p.steps.measured
    assert p.steps.kind == "optimizer"
    assert len(p.steps.loss) >= 3
    assert set(p.steps.phase_s) == {"data", "forward", "backward", "optimizer", "other"}
    # phases are parts of the step: their means add up to the mean step time
    mean_step = sum(p.steps.step_s) / len(p.steps.step_s)
    assert sum(p.steps.phase_s.values()) == pytest.approx(mean_step, rel=0.05)


def test_manual_update_without_optimizer():
    r = run("manual_sgd.py")
    assert r.exit_code == 0, r.message
    p = r.profile
    assert p.steps.kind == "backward"
    assert p.optimizer is None
    assert "by hand" in p.reasons["optimizer"]
    assert 3 <= p.steps.measured <= 6


@pytest.mark.parametrize("dry", [False, True], ids=["real", "dry-run"])
def test_manual_update_through_data_is_a_step(dry):
    """p.data.add_(...) bumps no version counter: a real run compares values, a dry run (no
    values) counts the in-place writes into the parameters' storage."""
    r = run("manual_sgd_data.py", dry_run=dry)
    assert r.exit_code == 0, r.message
    p = r.profile
    assert p.steps.kind == "backward" and p.optimizer is None
    assert p.steps.measured >= 1 and p.flops.per_step > 0 and p.memory.peak_bytes > 0


def test_gan_two_optimizers_reported():
    r = run("gan.py")
    assert r.exit_code == 0, r.message
    p = r.profile
    assert len(p.optimizer.optimizers) == 2
    assert len(p.model.roots) == 2
    assert p.steps.micro_batches == 1        # D and G each backward once: two loss terms, not accumulation


def test_lbfgs_closure():
    r = run("lbfgs.py")
    assert r.exit_code == 0, r.message
    assert r.profile.optimizer.optimizers[0].class_ == "LBFGS"
    assert 3 <= r.profile.steps.measured <= 6
    # the closure's re-evaluations (max_iter=4: up to 5 per step) are not accumulation
    assert r.profile.steps.micro_batches == 1 and r.profile.steps.closure_backwards >= 2
    assert not r.profile.static.accumulation


def test_accumulation_counts_micro_batches():
    r = run("accumulate.py")
    assert r.exit_code == 0, r.message
    p = r.profile
    assert p.steps.micro_batches == 4
    assert p.steps.samples_per_step == 4 * 8     # 4 micro-batches of 8


def test_exec_config_script():
    r = run("exec_config.py")
    assert r.exit_code == 0, r.message


def test_dataloader_workers():
    r = run("workers.py")
    assert r.exit_code == 0, r.message
    d = r.profile.data
    assert d.dataloader_seen and d.num_workers == 2 and d.persistent_workers
    assert d.batch_size == 32
    assert 0.0 <= d.wait_frac <= 1.0
    assert d.fingerprints and d.duplicate_scope == "sampled"


def test_script_sees_its_own_argv_main_folder_and_cwd(tmp_path):
    proc = cli("analyze", str(SCRIPTS / "uses_argv_and_cwd.py"), "--quiet", "--steps", "2", "--warmup", "1",
               "--out", str(tmp_path / "rep"), "--", "--alpha", "1", "beta", cwd=tmp_path)
    assert "argv: ['--alpha', '1', 'beta']" in proc.stdout, proc.stderr[-3000:]
    assert (tmp_path / "uses_argv_and_cwd.out").read_text().strip() == "--alpha 1 beta"
    assert (tmp_path / "rep" / "profile.json").exists()
    assert proc.returncode == 0, proc.stderr[-3000:]


# ---------------------------------------------------------------- bad input

def test_missing_file_exit_2(tmp_path):
    proc = cli("analyze", str(tmp_path / "nope.py"))
    assert proc.returncode == 2
    assert "nope.py: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_not_python_exit_2(tmp_path):
    f = tmp_path / "data.csv"
    f.write_text("a,b\n1,2\n")
    proc = cli("analyze", str(f))
    assert proc.returncode == 2
    assert "not a Python file" in proc.stderr and "Traceback" not in proc.stderr


def test_syntax_error_exit_3_names_file_and_line():
    proc = cli("analyze", str(SCRIPTS / "syntax_error.py"))
    assert proc.returncode == 3
    assert "syntax_error.py:8: syntax error" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(ScriptError) as err:
        check_script(SCRIPTS / "syntax_error.py")
    assert err.value.line == 8


def test_script_raises_exit_3_user_traceback_partial_profile(tmp_path):
    proc = cli("analyze", str(SCRIPTS / "raises.py"), "--quiet", "--steps", "3", "--warmup", "1",
               "--out", str(tmp_path))
    assert proc.returncode == 3
    err = proc.stderr
    assert "ValueError: bad shape" in err
    assert "raises.py" in err and "check_batch" in err
    assert "ccprof/profiler" not in err and "runpy" not in err   # our frames are removed
    p = Profile.from_json(tmp_path / "profile.json")
    assert p.status == "partial" and p.error.kind == "script_error"
    raise_line = next(i for i, l in enumerate((SCRIPTS / "raises.py").read_text().splitlines(), 1)
                      if "raise ValueError" in l)
    assert p.error.file.endswith("raises.py") and p.error.line == raise_line
    assert p.counters["optimizer_steps"] == 5        # what was measured before it is kept


def test_never_trains_exit_4_says_what_was_seen(tmp_path):
    proc = cli("analyze", str(SCRIPTS / "inference_only.py"), "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 4
    assert "never trained" in proc.stderr
    assert "forward calls, no backward" in proc.stderr


def test_ends_early_exit_4(tmp_path):
    r = run("ends_early.py")
    assert r.exit_code == 4
    assert r.profile.error.kind == "ended"
    assert "2 steps" in r.profile.error.message


def test_hang_times_out_exit_4_with_partial_profile():
    r = run("hangs.py", timeout_s=15)
    assert r.exit_code == 4
    assert r.profile is not None and r.profile.error.kind == "timeout"
    assert r.profile.counters["optimizer_steps"] == 2


def test_cpu_out_of_memory_is_a_finding(tmp_path):
    script = tmp_path / "oom.py"
    script.write_text(
        "import torch\n"
        "model = torch.nn.Linear(4, 4)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for step in range(100):\n"
        "    loss = model(torch.randn(2, 4)).sum()\n"
        "    loss.backward(); opt.step(); opt.zero_grad()\n"
        "    if step == 3:\n"
        "        huge = torch.empty(2 ** 62, dtype=torch.uint8)\n"
    )
    r = run_script(script, [], **FAST)
    assert r.exit_code == 3
    p = r.profile
    assert p.error.kind == "oom"
    oom = [f for f in p.findings if f.kind == "oom"]
    assert oom and oom[0].file.endswith("oom.py") and oom[0].line == 8
    # step 3 is a timed step (warm-up 1, FLOP step, memory step): the memory step's ledger is kept
    assert p.memory.params_bytes == 4 * (16 + 4) and p.memory.peak_bytes > 0


def test_out_of_memory_inside_the_memory_step_keeps_the_ledger_so_far(tmp_path):
    script = tmp_path / "oom_mem.py"
    script.write_text(
        "import torch\n"
        "model = torch.nn.Linear(4, 4)\n"
        "opt = torch.optim.Adam(model.parameters(), lr=0.1)\n"
        "for step in range(100):\n"
        "    loss = model(torch.randn(2, 4)).sum()\n"
        "    if step == 2:\n"                      # warm-up 0, FLOP step 1, memory step 2
        "        huge = torch.empty(2 ** 62, dtype=torch.uint8)\n"
        "    loss.backward(); opt.step(); opt.zero_grad()\n"
    )
    r = run_script(script, [], **FAST)
    p = r.profile
    assert r.exit_code == 3 and p.error.kind == "oom" and p.error.line == 7
    assert "up to the out-of-memory error" in p.memory.method
    assert p.memory.params_bytes == 4 * 20 and p.memory.optimizer_state_bytes == 8 * 20 + 2 * 4


def test_ctrl_c_writes_partial_profile(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "ccprof", "analyze", str(SCRIPTS / "hangs.py"), "--quiet",
                             "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    for line in proc.stdout:       # wait on the script's own line (an event), not on a clock
        if "sleeping forever" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)      # a terminal's Ctrl-C: ccprof's group; ccprof passes it on
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    p = Profile.from_json(tmp_path / "profile.json")
    assert p.error.kind == "interrupted"
    assert p.counters["optimizer_steps"] == 2


# ---------------------------------------------------------------- examples

@pytest.mark.slow
def test_cnn_example_profile():
    r = run_script(EXAMPLES / "cnn.py", ["--epochs", "1"], **FAST)
    assert r.exit_code == 0, r.message
    p = r.profile
    assert p.data.num_workers == 2
    assert p.model.params > 0 and p.flops.per_step > 0
    assert p.memory.params_bytes == 4 * p.model.params


@pytest.mark.slow
def test_hf_trainer_example_profile():
    r = run_script(EXAMPLES / "hf_trainer.py", [], **FAST)
    assert r.exit_code == 0, r.message
    p = r.profile
    assert p.model.hf_model_type == "llama"
    assert p.static.hf_trainer
    assert p.flops.per_step > 0 and p.steps.tokens_per_step
    assert p.optimizer.optimizers[0].class_ in ("AdamW", "Adam")
    assert not p.model.pretrained


def test_torchrun_two_ranks_gloo_merge_on_rank_0():
    r = run_script(SCRIPTS / "ddp_gloo.py", [], nproc=2, **FAST)
    assert r.exit_code == 0, r.message
    p = r.profile
    assert p.world_size == 2 and p.rank == 0
    assert [row["rank"] for row in p.ranks] == [0, 1]
    assert p.steps.samples_per_step == 2 * 32          # the global batch
    assert p.static.ddp
    assert all(row["status"] == "complete" for row in p.ranks)


@pytest.mark.parametrize("flags,message", [
    (["--gpu", "nosuch"], "unknown GPU 'nosuch'"),
    (["--price", "-1"], "--price must be a positive number"),
])
def test_bad_cost_options_fail_before_the_script_runs(tmp_path, flags, message):
    proc = cli("analyze", str(SCRIPTS / "hangs.py"), *flags, "--out", str(tmp_path))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert "step 0" not in proc.stdout          # hangs.py was never started
    assert not (tmp_path / "profile.json").exists()


def test_json_flag_keeps_stdout_pure_json(tmp_path):
    import json

    proc = cli("analyze", str(SCRIPTS / "uses_argv_and_cwd.py"), "--json", "--quiet", "--steps", "2",
               "--warmup", "1", "--out", str(tmp_path / "rep"), "--", "x", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)                    # the script's prints went to stderr
    assert data["schema"] == "ccprof.profile/1" and data["environment"]["argv"] == ["x"]
    assert "argv: ['x']" in proc.stderr


def test_progress_in_a_log_is_one_line_per_step(tmp_path):
    """stderr is not a terminal (CI, `| tee`): progress comes as lines while the run goes, not a bar
    that prints nothing until the end; the summary's figures are whole."""
    proc = cli("analyze", str(SCRIPTS / "uses_argv_and_cwd.py"), "--steps", "2", "--warmup", "1",
               "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [line for line in proc.stderr.splitlines() if line.startswith("ccprof: ") and ": step " in line]
    assert steps and steps[-1].split(": step ")[1].split(",")[0].split("/")[0] == \
        steps[-1].split(": step ")[1].split(",")[0].split("/")[1], steps
    assert all(" ms" in line for line in steps), steps
    assert "…" not in proc.stderr
