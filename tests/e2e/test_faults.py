"""The fault matrix (issue 13): every bad input and fault ends cleanly.

Each case runs the real `ccprof` CLI in a subprocess on real files in a fresh folder and
checks, besides its own expectations:

- the exit code (README lists them);
- that the message names the user's file or the option at fault;
- that no traceback frame from ccprof's own package, torchrun or rich/click is shown (the
  user's own traceback, when their script raised, is expected);
- that no file in the folder changed unless a backup of it was kept;
- that no process of the run is left alive (none has its cwd in the folder, none runs the
  harness).

Waits are on events (a line the script prints, a file it writes), never on sleeps.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# a tiny training loop: `--steps 2 --warmup 1` measures 5 steps; STEPS bounds the loop
TRAIN = """\
import sys, time, torch
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range({steps}):
    x = torch.randn(4, 8)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
{body}
"""


def train(body: str = "", steps: int = 100) -> str:
    return TRAIN.format(steps=steps, body="\n".join("    " + line for line in body.splitlines()))


FAST = ["--steps", "2", "--warmup", "1", "-q"]
FOREIGN_FRAME = re.compile(r'File "[^"]*(/ccprof/|torch/distributed/(run|launcher|elastic)|/rich/|/click/)')


@dataclass
class Case:
    id: str
    argv: list[str]                       # after `python -m ccprof`
    code: int
    names: list[str] = field(default_factory=list)       # must appear in stderr
    files: dict[str, str | bytes] = field(default_factory=dict)
    profile: bool | None = None           # out/profile.json must exist (True) / must not (False)
    user_traceback: bool = False          # the user's own traceback is shown
    changed_ok: tuple[str, ...] = ()      # files the command may change (its outputs)
    setup: str = ""                       # "profile": put a real profile.json + advice.json in p/


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in folder.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts:
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _leftovers(folder: Path) -> list[str]:
    """Processes whose cwd is in ``folder`` or that run the harness for a script in it."""
    found = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cwd = os.readlink(d / "cwd")
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if "Z" in state.split()[1:2]:
            continue       # a zombie has ended; only its parent's wait is missing
        if cwd.startswith(str(folder)) or (str(folder) in cmd and "ccprof" in cmd):
            found.append(f"{d.name}: {cmd[:200]}")
    return found


def _no_leftovers(folder: Path) -> None:
    # a killed process group can take a moment to be reaped: wait on it ending, bounded
    deadline = time.monotonic() + 30
    while _leftovers(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _leftovers(folder), _leftovers(folder)


def _ccprof(argv: list[str], cwd: Path, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccprof", *argv], cwd=cwd, capture_output=True,
                          timeout=timeout, **kw)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A real profile.json and advice.json, from one analyze of the tiny loop."""
    d = tmp_path_factory.mktemp("saved")
    (d / "train.py").write_text(train())
    r = _ccprof(["analyze", "train.py", *FAST, "--out", "p"], d)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return d / "p"


def _deep(n: int = 100_000) -> str:
    return "[" * n + "]" * n


CASES = [
    # ---- analyze: bad input, found before the script runs (exit 2, the option or file named)
    Case("missing-script", ["analyze", "nope.py"], 2, ["nope.py"]),
    Case("script-is-folder", ["analyze", "adir"], 2, ["adir"], files={"adir/x.txt": "x"}),
    Case("binary-script", ["analyze", "bin.py"], 2, ["bin.py"], files={"bin.py": b"\x00\x01\x02ELF"}),
    Case("not-python", ["analyze", "notes.txt"], 2, ["notes.txt"], files={"notes.txt": "hello"}),
    Case("syntax-error", ["analyze", "bad.py"], 3, ["bad.py:2"], files={"bad.py": "x = 1\ny = (\n"}),
    Case("steps-zero", ["analyze", "train.py", "--steps", "0"], 2, ["--steps"]),
    Case("timeout-negative", ["analyze", "train.py", "--timeout", "-1"], 2, ["--timeout"]),
    Case("timeout-nan", ["analyze", "train.py", "--timeout", "nan"], 2, ["--timeout"]),
    Case("epochs-negative", ["analyze", "train.py", "--epochs", "-3"], 2, ["--epochs"]),
    Case("price-nan", ["analyze", "train.py", "--price", "nan"], 2, ["--price"]),
    Case("price-negative", ["analyze", "train.py", "--price", "-1"], 2, ["--price"]),
    Case("gpu-unknown", ["analyze", "train.py", "--gpu", "no-such-gpu"], 2, ["no-such-gpu"]),
    Case("catalog-binary", ["analyze", "train.py", "--catalog", "bin.toml"], 2, ["bin.toml"],
         files={"bin.toml": b"\x00\xff\xfe\x01"}),
    Case("catalog-bad-toml", ["analyze", "train.py", "--catalog", "c.toml"], 2, ["c.toml"],
         files={"c.toml": "[gpus\nx = "}),
    Case("catalog-missing", ["analyze", "train.py", "--catalog", "none.toml"], 2, ["none.toml"]),
    Case("history-malformed", ["analyze", "train.py", "--history", "h.json"], 2, ["--history", "h.json"],
         files={"h.json": "{not json"}),
    Case("verify-word", ["analyze", "train.py", "--verify", "abc"], 2, ["--verify"]),
    Case("out-under-a-file", ["analyze", "train.py", "--out", "file.txt/sub"], 2, ["--out", "file.txt"],
         files={"file.txt": "keep me"}),
    Case("out-holds-someone-elses-profile", ["analyze", "train.py", "--out", "mine"], 2, ["--out", "profile.json"],
         files={"mine/profile.json": "{\"mine\": true}"}),
    Case("out-is-a-file", ["analyze", "train.py", "--out", "file.txt"], 2, ["file.txt"],
         files={"file.txt": "keep me"}),
    # ---- analyze: the script's own faults (what was measured is kept)
    Case("brackets-in-path", ["analyze", "tr[ai]n.py", "--steps", "2", "--warmup", "1", "--out", "out"], 0,
         profile=True, files={"tr[ai]n.py": train()}),
    Case("raises-at-step-3", ["analyze", "boom.py", *FAST, "--out", "out"], 3, ["boom.py:11", "ValueError"],
         files={"boom.py": train("if step == 3:\n    raise ValueError('bad batch')")}, profile=True,
         user_traceback=True),
    Case("raises-after-passes", ["analyze", "boom.py", "--steps", "5", "--warmup", "1", "-q", "--out", "out"], 3,
         ["boom.py:11"], files={"boom.py": train("if step == 5:\n    raise ValueError('bad batch')")},
         profile=True, user_traceback=True),
    Case("bare-memory-error", ["analyze", "mem.py", "--steps", "5", "--warmup", "1", "-q", "--out", "out"], 3,
         ["mem.py:11", "out of memory"], files={"mem.py": train("if step == 4:\n    raise MemoryError")},
         profile=True, user_traceback=True),
    Case("str-raises", ["analyze", "weird.py", "--steps", "5", "--warmup", "1", "-q", "--out", "out"], 3,
         ["weird.py"], profile=True, user_traceback=True,
         files={"weird.py": "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
                + train("if step == 4:\n    raise E()")}),
    Case("sys-exit-2", ["analyze", "quit.py", "--steps", "5", "--warmup", "1", "-q", "--out", "out"], 3,
         ["sys.exit(2)"], files={"quit.py": train("if step == 4:\n    sys.exit(2)")}, profile=True),
    Case("os-exit-1", ["analyze", "hard.py", "--steps", "5", "--warmup", "1", "-q", "--out", "out"], 3,
         ["exited with code 1"], files={"hard.py": "import os\n" + train("if step == 5:\n    os._exit(1)")},
         profile=True),
    Case("segfault", ["analyze", "segv.py", "--steps", "5", "--warmup", "1", "-q", "--out", "out"], 3,
         ["SIGSEGV"], files={"segv.py": "import os, signal\n" + train(
             "if step == 5:\n    os.kill(os.getpid(), signal.SIGSEGV)")}, profile=True),
    Case("deletes-own-cwd", ["analyze", "../rmcwd.py", *FAST, "--out", "../out"], 0, profile=True,
         files={"rmcwd.py": "import os\n" + train("if step == 2:\n    os.rmdir(os.getcwd())")},
         setup="cwd:gone"),
    Case("never-trains", ["analyze", "infer.py", *FAST, "--out", "out"], 4, ["never trained"], profile=True,
         files={"infer.py": "import torch\nm = torch.nn.Linear(4, 1)\nwith torch.no_grad():\n"
                "    for _ in range(20):\n        m(torch.randn(2, 4))\n"}),
    Case("ends-early", ["analyze", "short.py", *FAST, "--out", "out"], 4, ["ended before"], profile=True,
         files={"short.py": train(steps=2)}),
    Case("hang-timeout", ["analyze", "hang.py", *FAST, "--timeout", "8", "--out", "out"], 4, ["timed out"],
         profile=True, files={"hang.py": train("if step == 1:\n    time.sleep(3600)")}),
    Case("ignores-sigterm", ["analyze", "deaf.py", "--steps", "50", "--warmup", "1", "-q", "--timeout", "12",
                             "--out", "out"], 4, ["timed out"], profile=True,
         files={"deaf.py": "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                + train("if step >= 6:\n    time.sleep(0.5)", steps=10**6)}),
    Case("swallows-the-stop", ["analyze", "eat.py", *FAST, "--out", "out"], 0, profile=True,
         files={"eat.py": "import torch\nm = torch.nn.Linear(8, 1)\nopt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
                "while True:\n    try:\n        loss = m(torch.randn(4, 8)).pow(2).mean()\n"
                "        opt.zero_grad(); loss.backward(); opt.step()\n    except BaseException:\n        pass\n"}),
    Case("saves-the-whole-model", ["analyze", "save.py", *FAST, "--out", "out"], 0, profile=True,
         files={"save.py": train("if step == 3:\n    torch.save(model, 'm.pt')\n    "
                                 "model2 = torch.load('m.pt', weights_only=False)\n    assert not model2._forward_pre_hooks")}),
    Case("leaves-a-helper", ["analyze", "helper.py", *FAST, "--out", "out"], 0, profile=True,
         files={"helper.py": "import subprocess, sys\n"
                "h = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
                + train()}),
    # ---- report / advise / compare: never over an input, never over someone's file
    Case("report-over-its-profile", ["report", "p/profile.json", "-o", "p/profile.json"], 2,
         ["-o", "p/profile.json"], setup="profile"),
    Case("advise-over-its-profile", ["advise", "p/profile.json", "-o", "p/profile.json"], 2,
         ["p/profile.json"], setup="profile"),
    Case("compare-over-an-input", ["compare", "p/profile.json", "p/profile.json", "-o", "p/profile.json"], 2,
         ["p/profile.json"], setup="profile"),
    Case("report-over-user-file", ["report", "p/profile.json", "-o", "notes.html", "-q"], 2,
         ["notes.html", "--force"], setup="profile", files={"notes.html": "my notes"}),
    Case("report-force-keeps-backup", ["report", "p/profile.json", "-o", "notes.html", "-q", "--force"], 0,
         ["notes.html.bak"], setup="profile", files={"notes.html": "my notes"}, changed_ok=("notes.html",)),
    Case("report-missing", ["report", "nothere.json"], 2, ["nothere.json"]),
    Case("report-not-json", ["report", "x.json"], 2, ["x.json"], files={"x.json": "hello"}),
    Case("report-steps-null", ["report", "p/bad.json"], 2, ["p/bad.json", "steps"], setup="profile:steps=null"),
    Case("report-string-number", ["report", "p/bad.json"], 2, ["p/bad.json", "step_s"],
         setup="profile:step_s=str"),
    Case("report-deep-json", ["report", "deep.json"], 2, ["deep.json"], files={"deep.json": _deep()}),
    Case("advise-steps-null", ["advise", "p/bad.json", "-o", "a.json"], 2, ["p/bad.json"],
         setup="profile:steps=null"),
    Case("advise-gpu-unknown", ["advise", "p/profile.json", "--gpu", "no-such-gpu"], 2, ["no-such-gpu"],
         setup="profile"),
    Case("advise-history-malformed", ["advise", "p/profile.json", "--history", "h.json"], 2, ["--history", "h.json"],
         setup="profile", files={"h.json": "{not json"}),
    Case("advise-total-steps-negative", ["advise", "p/profile.json", "--total-steps", "-5"], 2, ["--total-steps"],
         setup="profile"),
    Case("report-on-a-folder", ["report", "p"], 2, ["p"], setup="profile"),
    Case("compare-one-arg", ["compare", "p/profile.json"], 2, ["compare"], setup="profile"),
    Case("compare-dir-one-run", ["compare", "--dir", "p"], 2, ["p"], setup="profile"),
    # ---- apply: options named, scripts never lost
    Case("apply-unknown-tweak", ["apply", "train.py", "-t", "no_such_tweak"], 2, ["no_such_tweak"]),
    Case("apply-tweak-without-codemod", ["apply", "train.py", "-t", "pruning"], 2, ["pruning"]),
    Case("apply-option-not-a-number", ["apply", "train.py", "-t", "grad_accumulation", "--option",
                                       "accumulation_steps=abc"], 2, ["accumulation_steps"]),
    Case("apply-option-unknown", ["apply", "train.py", "-t", "tf32", "--option", "nosuch=1"], 2, ["nosuch"]),
    Case("apply-missing-script", ["apply", "nope.py", "-t", "tf32"], 2, ["nope.py"]),
    Case("apply-syntax-error", ["apply", "bad.py", "-t", "tf32"], 3, ["bad.py:2"], files={"bad.py": "x = 1\ny = (\n"}),
    Case("apply-over-script-refused", ["apply", "train.py", "-t", "tf32", "-o", "train.py"], 2,
         ["train.py", "--in-place"]),
    Case("apply-over-script-force-keeps-backup", ["apply", "train.py", "-t", "tf32", "-o", "train.py", "--force"], 0,
         ["train.py.bak"], changed_ok=("train.py",)),
    Case("apply-over-other-file-refused", ["apply", "train.py", "-t", "tf32", "-o", "other.py"], 2,
         ["other.py", "--force"], files={"other.py": "print('mine')\n"}),
    Case("apply-over-other-file-force", ["apply", "train.py", "-t", "tf32", "-o", "other.py", "--force"], 0,
         ["other.py.bak"], files={"other.py": "print('mine')\n"}, changed_ok=("other.py",)),
    Case("apply-into-missing-folder", ["apply", "train.py", "-t", "tf32", "-o", "no/such/dir/t.py"], 2, ["no/such/dir"]),
    Case("apply-in-place-keeps-backup", ["apply", "train.py", "-t", "tf32", "--in-place"], 0, ["train.py.bak"],
         changed_ok=("train.py",)),
    Case("gpus-binary-catalog", ["gpus", "--catalog", "bin.toml"], 2, ["bin.toml"], files={"bin.toml": b"\xff\x00"}),
]


def _prepare(case: Case, tmp: Path, saved: Path) -> Path:
    (tmp / "train.py").write_text(train())
    for name, content in case.files.items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    if case.setup.startswith("profile"):
        (tmp / "p").mkdir()
        for name in ("profile.json", "advice.json"):
            (tmp / "p" / name).write_bytes((saved / name).read_bytes())
        if ":" in case.setup:
            data = json.loads((saved / "profile.json").read_text())
            what = case.setup.split(":", 1)[1]
            if what == "steps=null":
                data["steps"] = None
            elif what == "step_s=str":
                data["steps"]["step_s"] = ["abc"]
            (tmp / "p" / "bad.json").write_text(json.dumps(data))
    if case.setup.startswith("cwd:"):       # a folder the script runs in (and may delete)
        (tmp / case.setup.split(":", 1)[1]).mkdir()
        return tmp / case.setup.split(":", 1)[1]
    return tmp


def _check_common(case: Case, r: subprocess.CompletedProcess, tmp: Path, before: dict[str, str]) -> str:
    err = r.stderr.decode(errors="replace")
    assert r.returncode == case.code, f"exit {r.returncode}, wanted {case.code}:\n{err[-3000:]}"
    for name in case.names:
        assert name in err, f"{name!r} not named in:\n{err[-3000:]}"
    assert not FOREIGN_FRAME.search(err), f"a ccprof/torchrun/rich frame is shown:\n{err[-3000:]}"
    if not case.user_traceback:
        assert "Traceback" not in err, err[-3000:]
    after = _snapshot(tmp)
    for name, digest in before.items():
        if name in case.changed_ok or after.get(name) == digest:
            continue
        if name.startswith(("out/", "p/")) and name.rsplit("/", 1)[-1] in ("profile.json", "advice.json", "report.html"):
            continue     # ccprof's own artefacts in its --out folder
        assert name in after, f"{name} was removed"
        raise AssertionError(f"{name} changed without a backup")
    for name in case.changed_ok:
        if name in before and after.get(name) != before[name] and name in after:
            backups = [b for b in after if b.startswith(name + ".bak")]
            assert any(after[b] == before[name] for b in backups), f"{name} changed and no backup holds the original"
    _no_leftovers(tmp)
    return err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, tmp_path: Path, saved: Path):
    cwd = _prepare(case, tmp_path, saved)
    before = _snapshot(tmp_path)
    r = _ccprof(case.argv, cwd)
    _check_common(case, r, tmp_path, before)
    out = tmp_path / "out"
    if case.profile is True:
        assert (out / "profile.json").is_file(), "no profile written"
        p = json.loads((out / "profile.json").read_text())
        assert p["status"] == ("complete" if case.code == 0 else "partial")
        if case.code:
            assert p["error"]["exit_code"] == case.code, p["error"]


def test_bracket_path_with_progress_bar(tmp_path: Path):
    """Not quiet: the progress bar shows the path; rich must not read [ai] as markup."""
    (tmp_path / "tr[ai]n.py").write_text(train())
    r = _ccprof(["analyze", "tr[ai]n.py", "--steps", "2", "--warmup", "1", "--out", "out"], tmp_path)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert "MarkupError" not in r.stderr.decode()


def test_analyze_keeps_earlier_runs_and_compare_takes_the_last_two(tmp_path: Path):
    (tmp_path / "train.py").write_text(train())
    for _ in range(3):
        r = _ccprof(["analyze", "train.py", *FAST, "--out", "out"], tmp_path)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
    runs = sorted((tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 2 and all((d / "profile.json").is_file() and (d / "report.html").is_file() for d in runs)
    assert all(re.fullmatch(r"\d{8}T\d{6}Z(-\d+)?", d.name) for d in runs), [d.name for d in runs]
    r = _ccprof(["compare", "--dir", "out", "-q"], tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert str(runs[-1] / "profile.json").split("out/", 1)[1] in err and "out/profile.json" in err
    assert (tmp_path / "out" / "compare.html").is_file()


def test_no_leftover_temp_folder_after_a_kill(tmp_path: Path):
    """SIGKILL of the script's process (not of ccprof): ccprof still cleans its temp folder."""
    (tmp_path / "kill.py").write_text("import os, signal\n" + train("if step == 5:\n    os.kill(os.getpid(), signal.SIGKILL)"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = _ccprof(["analyze", "kill.py", "--steps", "5", "--warmup", "1", "-q", "--out", "out"], tmp_path,
                env={**os.environ, "TMPDIR": str(tmp)})
    assert r.returncode == 3 and "SIGKILL" in r.stderr.decode(), r.stderr.decode()[-2000:]
    assert [p.name for p in tmp.iterdir() if p.name.startswith("ccprof-")] == []   # torch's own caches may stay
    _no_leftovers(tmp_path)


# ---- signals to ccprof itself, sent once the script says it reached its timed steps

SIGNALLED = train("if step == 6:\n    print('ccprof-test: step 6', flush=True)\nif step >= 6:\n    time.sleep(0.2)",
                  steps=10**6)


def _start(tmp: Path, *extra: str) -> subprocess.Popen:
    (tmp / "sig.py").write_text(SIGNALLED)
    return subprocess.Popen([sys.executable, "-m", "ccprof", "analyze", "sig.py", "--steps", "500", "--warmup", "1",
                             "-q", "--out", "out", *extra], cwd=tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc: subprocess.Popen, text: str) -> None:
    for line in proc.stdout:       # the script's stdout passes through ccprof: an event, not a sleep
        if text in line:
            return
    raise AssertionError(f"the script ended before printing {text!r}: {proc.stderr.read()[-2000:]}")


@pytest.mark.parametrize("sig, code, kind", [(signal.SIGTERM, 143, "terminated"),
                                              (signal.SIGINT, 130, "interrupted")])
def test_signal_to_ccprof_ends_the_run_and_keeps_the_profile(tmp_path: Path, sig, code, kind):
    proc = _start(tmp_path)
    _wait_for_line(proc, "ccprof-test: step 6")
    proc.send_signal(sig)          # to ccprof's PID alone, as `timeout`, CI runners and Slurm do
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert not FOREIGN_FRAME.search(err) and "Traceback" not in err, err[-3000:]
    p = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert p["error"]["kind"] == kind and p["error"]["exit_code"] == code
    assert p["counters"]["optimizer_steps"] >= 6 and p["flops"] is not None
    _no_leftovers(tmp_path)


def test_double_ctrl_c_still_keeps_what_was_measured(tmp_path: Path):
    proc = _start(tmp_path)
    _wait_for_line(proc, "ccprof-test: step 6")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "before anything was measured" not in err and "Traceback" not in err, err[-3000:]
    p = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert p["error"]["kind"] == "interrupted" and p["flops"] is not None
    _no_leftovers(tmp_path)


def test_failing_rank_shows_the_users_error_and_keeps_the_ranks(tmp_path: Path):
    (tmp_path / "ddp.py").write_text(
        "import torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "rank = dist.get_rank()\n"
        "model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for step in range(100):\n"
        "    loss = model(torch.randn(4, 8)).pow(2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
        "    if rank == 1 and step == 5:\n"
        "        raise ValueError('rank one broke')\n")
    r = _ccprof(["analyze", "ddp.py", "--steps", "5", "--warmup", "1", "-q", "--nproc", "2", "--out", "out"],
                tmp_path, timeout=300)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 3, err[-3000:]
    assert "rank 1" in err and "ValueError: rank one broke" in err and "ddp.py\", line 10" in err, err[-3000:]
    assert not FOREIGN_FRAME.search(err) and "ChildFailedError" not in err, err[-3000:]
    p = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert p["world_size"] == 2 and p["status"] == "partial"
    assert p["error"]["message"].startswith("rank 1:")
    assert {r["rank"] for r in p["ranks"]} == {0, 1}
    _no_leftovers(tmp_path)


def test_timeout_with_dataloader_workers_is_a_timeout_not_a_worker_error(tmp_path: Path):
    """The stop goes to the script's process, not its workers first: torch's "DataLoader worker
    exited unexpectedly" must not replace the timeout."""
    (tmp_path / "workers.py").write_text(
        "import time, torch\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "ds = TensorDataset(torch.randn(10000, 8), torch.randn(10000, 1))\n"
        "model = torch.nn.Linear(8, 1)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for step, (x, y) in enumerate(DataLoader(ds, batch_size=4, num_workers=2)):\n"
        "    loss = (model(x) - y).pow(2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
        "    if step == 1:\n"
        "        time.sleep(3600)\n")
    r = _ccprof(["analyze", "workers.py", *FAST, "--timeout", "20", "--out", "out"], tmp_path)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 4, err[-3000:]
    assert "exited unexpectedly" not in err and "Traceback" not in err, err[-3000:]
    # "no_training" when a loaded machine had not reached the first backward by the timeout
    assert json.loads((tmp_path / "out" / "profile.json").read_text())["error"]["kind"] in ("timeout", "no_training")
    _no_leftovers(tmp_path)


def test_timeout_under_nproc_ends_every_rank(tmp_path: Path):
    """Rank 1 hangs, so rank 0 blocks in its all-reduce and cannot answer the stop: ccprof
    kills the ranks' own process groups too (torchrun starts each in a new session)."""
    (tmp_path / "stuck.py").write_text(
        "import time, torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for step in range(100):\n"
        "    loss = model(torch.randn(4, 8)).pow(2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
        "    if dist.get_rank() == 1 and step == 1:\n"
        "        time.sleep(3600)\n")
    r = _ccprof(["analyze", "stuck.py", *FAST, "--nproc", "2", "--timeout", "30", "--out", "out"], tmp_path,
                timeout=300)
    err = r.stderr.decode(errors="replace")
    assert r.returncode in (3, 4), err[-3000:]
    assert not FOREIGN_FRAME.search(err) and "ChildFailedError" not in err, err[-3000:]
    _no_leftovers(tmp_path)


def test_sighup_to_ccprof_stops_the_script(tmp_path: Path):
    """The terminal closed (ssh dropped): the script must not train on without ccprof."""
    proc = _start(tmp_path)
    _wait_for_line(proc, "ccprof-test: step 6")
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert json.loads((tmp_path / "out" / "profile.json").read_text())["error"]["kind"] == "terminated"
    _no_leftovers(tmp_path)


def test_own_catalog_gpu_is_the_one_memory_advice_judges(tmp_path: Path):
    """`--catalog own.toml --gpu own`: the memory advisors judge the fit on that GPU's memory,
    not on the default A100 80GB (issue 12)."""
    (tmp_path / "train.py").write_text(train())
    (tmp_path / "own.toml").write_text(
        '[gpu.lab-card]\nname = "Lab Card 2GB"\nmemory_gb = 2\nbandwidth_gb_s = 300\n'
        'tflops = { fp32 = 10.0, bf16 = 40.0 }\nusd_per_hour = 0.5\nprice_source = "our lab"\n'
        'price_date = "2026-12-01"\n')
    r = _ccprof(["analyze", "train.py", *FAST, "--catalog", "own.toml", "--gpu", "lab-card", "--out", "out"],
                tmp_path)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    advice = json.loads((tmp_path / "out" / "advice.json").read_text())
    text = json.dumps([a for a in advice["advice"] if a["tweak"] in ("batch_size", "grad_accumulation",
                                                                      "checkpointing")])
    assert "Lab Card 2GB" in text or "1.86 GiB" in text, text[:3000]
    assert "80GB" not in text and "74.5" not in text, text[:3000]
