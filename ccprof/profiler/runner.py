"""Parent side of profiling: check the script, start the harness child, enforce the timeout.

A hang, crash or segfault in the user's code cannot take ccprof down: the child is killed
after ``timeout_s`` (SIGTERM first, so it writes what it measured; SIGKILL after a grace
period), and whatever Profile it wrote is returned with an exit code that says what
happened (see ``ccprof.cli``).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ccprof.profiler.profile import ErrorInfo, Profile

__all__ = ["ScriptError", "check_script", "run_script", "RunResult", "EXIT_BAD_INPUT", "EXIT_SCRIPT_ERROR",
           "EXIT_NOTHING", "EXIT_INTERRUPTED", "EXIT_VERIFY_FAILED"]

EXIT_BAD_INPUT, EXIT_SCRIPT_ERROR, EXIT_NOTHING, EXIT_INTERRUPTED = 2, 3, 4, 130
EXIT_VERIFY_FAILED = 5      # --verify: every requested re-run failed (the baseline was measured)
GRACE_S = 20.0      # after SIGTERM, time for the child to write its partial profile


class ScriptError(Exception):
    """Bad input, in the user's terms; ``exit_code`` says which kind."""

    def __init__(self, message: str, exit_code: int, file: str | None = None, line: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.file = file
        self.line = line


def check_script(path: str | Path) -> Path:
    """Raise ScriptError (exit 2 or 3) unless ``path`` is a Python file that compiles."""
    p = Path(path)
    if not p.exists():
        raise ScriptError(f"{path}: no such file", EXIT_BAD_INPUT, str(path))
    if p.is_dir():
        raise ScriptError(f"{path}: is a directory, not a Python script", EXIT_BAD_INPUT, str(path))
    try:
        source = p.read_bytes()
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read it ({exc.strerror})", EXIT_BAD_INPUT, str(path)) from None
    first = source.split(b"\n", 1)[0]
    if p.suffix not in (".py", ".pyw") and not (first.startswith(b"#!") and b"python" in first):
        raise ScriptError(f"{path}: not a Python file (expected a .py script)", EXIT_BAD_INPUT, str(path))
    if b"\x00" in source[:4096]:
        raise ScriptError(f"{path}: not a Python file (it is binary)", EXIT_BAD_INPUT, str(path))
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)
        raise ScriptError(f"{where}: syntax error: {exc.msg}", EXIT_SCRIPT_ERROR, str(path),
                          exc.lineno) from None
    except ValueError as exc:
        raise ScriptError(f"{path}: not a Python file ({exc})", EXIT_BAD_INPUT, str(path)) from None
    return p


@dataclass
class RunResult:
    profile: Profile | None
    exit_code: int
    message: str | None = None


def run_script(script: str | Path, args: list[str] | None = None, *, steps: int = 10, warmup: int = 3,
               timeout_s: float = 600.0, tweak: str | list[str] | None = None,
               tweak_options: dict[str, dict] | None = None,
               seed: int | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
               python: str | None = None, stdout: Any = None, nproc: int = 1,
               scan_data: bool = False) -> RunResult:
    """Profile ``script`` in a child process; never raises for the script's own failures.

    Raises ScriptError for bad input (missing file, not Python, syntax error) before
    anything runs. ``on_event`` receives the child's progress events (one per step).
    ``stdout`` redirects the script's standard output (``--json`` keeps ccprof's stdout clean).
    ``tweak`` (one id or several) is applied to the live run at the first forward of the
    model (``--verify``), with ``tweak_options`` keyed by tweak id.
    ``nproc`` > 1 runs it under torchrun: each rank profiles itself, rank 0's profile carries
    the merge (``world_size``, ``ranks``).
    """
    script = str(script)
    check_script(script)
    with tempfile.TemporaryDirectory(prefix="ccprof-") as tmp:
        out = os.path.join(tmp, "profile.json")
        progress_path = os.path.join(tmp, "progress.jsonl")
        Path(progress_path).touch()
        spec = {"script": script, "args": list(args or []), "steps": steps, "warmup": warmup,
                "out": out, "progress_path": progress_path, "tweak": tweak,
                "tweak_options": tweak_options or {}, "seed": seed, "timeout": timeout_s,
                "scan_data": scan_data}
        spec_path = os.path.join(tmp, "spec.json")
        Path(spec_path).write_text(json.dumps(spec))
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        cmd = [python or sys.executable]
        if nproc > 1:
            cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd += ["-m", "ccprof.profiler.harness", spec_path]
        proc = subprocess.Popen(cmd, env=env, stdout=stdout)
        last: dict[str, Any] = {}
        done = threading.Event()

        def pump() -> None:
            with open(progress_path) as fh:
                while True:
                    line = fh.readline()
                    if not line:
                        if done.is_set():
                            return
                        time.sleep(0.05)
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    last.update(event)
                    if on_event is not None:
                        try:
                            on_event(event)
                        except Exception:
                            pass

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        interrupted = False
        timed_out = False
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = _stop(proc)
        except KeyboardInterrupt:
            # the child got the same SIGINT; give it time to write what it measured
            interrupted = True
            try:
                code = proc.wait(timeout=GRACE_S)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                code = _stop(proc)
        done.set()
        reader.join(timeout=2)
        if nproc > 1:
            profile = merge_ranks(out, nproc)
        else:
            profile = Profile.from_json(out) if os.path.exists(out) else None
    if interrupted:
        code = EXIT_INTERRUPTED
    if profile is None:
        if timed_out:
            msg = f"timed out after {timeout_s:g} s and the run could not report (killed)"
            code = EXIT_NOTHING
        elif interrupted:
            msg = "interrupted before anything was measured"
        elif code < 0:
            msg = f"the script's process died with signal {-code} ({_signame(-code)})"
            code = EXIT_SCRIPT_ERROR
        else:
            msg = f"the profiling process exited with code {code} without a profile"
            code = code or EXIT_SCRIPT_ERROR
        seen = last.get("counters")
        if seen:
            msg += f"; seen: {seen}"
        return RunResult(None, code, msg)
    if timed_out and profile.error is not None and profile.error.kind == "ended":
        profile = _with_error(profile, "timeout", f"timed out after {timeout_s:g} s")
    message = profile.error.message if profile.error else None
    return RunResult(profile, code if code >= 0 else EXIT_SCRIPT_ERROR, message)


def merge_ranks(out: str, nproc: int) -> Profile | None:
    """Rank 0's profile with every rank's step time, peak memory and samples beside it.

    The step of a data-parallel job is as slow as its slowest rank, so ``steps.step_s``
    becomes the per-step maximum over ranks; samples per step add up to the global batch.
    """
    from dataclasses import replace

    profiles = {}
    for r in range(nproc):
        path = f"{out}.rank{r}"
        if os.path.exists(path):
            profiles[r] = Profile.from_json(path)
    if 0 not in profiles:
        return None
    p0 = profiles[0]
    ranks = []
    for r, p in sorted(profiles.items()):
        mean = sum(p.steps.step_s) / len(p.steps.step_s) if p.steps.step_s else None
        ranks.append({"rank": r, "step_s_mean": mean, "peak_bytes": p.memory.peak_bytes,
                      "samples_per_step": p.steps.samples_per_step, "status": p.status,
                      "error": p.error.message if p.error else None})
    n = min(len(p.steps.step_s) for p in profiles.values())
    step_s = [max(p.steps.step_s[i] for p in profiles.values()) for i in range(n)]
    samples = [p.steps.samples_per_step for p in profiles.values()]
    tokens = [p.steps.tokens_per_step for p in profiles.values()]
    steps = replace(p0.steps, step_s=step_s, measured=n,
                    samples_per_step=sum(samples) if all(samples) else p0.steps.samples_per_step,
                    tokens_per_step=sum(tokens) if all(tokens) else p0.steps.tokens_per_step)
    error = p0.error or next((p.error for p in profiles.values() if p.error), None)
    return replace(p0, steps=steps, world_size=nproc, rank=0, ranks=ranks, error=error,
                   status="complete" if error is None and len(profiles) == nproc else "partial")


def _with_error(profile: Profile, kind: str, message: str) -> Profile:
    from dataclasses import replace

    return replace(profile, error=ErrorInfo(kind=kind, message=message, exit_code=EXIT_NOTHING))


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "unknown"
