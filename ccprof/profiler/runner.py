"""Parent side of profiling: check the script, start the harness child, enforce the timeout.

A hang, crash or segfault in the user's code cannot take ccprof down: the child is killed
after ``timeout_s`` (SIGTERM first, so it writes what it measured; SIGKILL after a grace
period), and whatever Profile it wrote is returned with an exit code that says what
happened (see ``ccprof.cli``).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ccprof.artefacts.profile import ErrorInfo, Profile
from ccprof.exit_codes import CcprofError, ExitCode
from ccprof.profiler._dry_journal import BACKUPS_ENV, undo_left
from ccprof.profiler.clock import wall_s
from ccprof.profiler.dryrun_pipe import merge_stages, pipeline_path
from ccprof.profiler.launched import flag_stragglers, merged_steps, rank_row
from ccprof.profiler.spec import RunSpec

__all__ = ["ScriptError", "check_script", "run_script", "RunResult", "who_sent"]

GRACE_S = 20.0      # after SIGTERM, time for the child to write its partial profile
ACK_S = 3.0         # ...once it said "stopping"; a child that does not within ACK_S is killed
CHILDREN_GRACE_S = 2.0      # after the script's process ended: its leftover children, TERM then KILL
SENT_LOG = "sent-signals"   # in the run's temp folder: every signal ccprof sent the run, and why


class _Terminated(BaseException):
    """ccprof itself was sent SIGTERM while the script ran."""


class ScriptError(CcprofError):
    """Bad input, in the user's terms; ``exit_code`` says which kind."""

    def __init__(self, message: str, exit_code: int, file: str | None = None, line: int | None = None):
        super().__init__(message, exit_code)
        self.file = file
        self.line = line


def check_script(path: str | Path) -> Path:
    """Raise ScriptError (exit 2 or 3) unless ``path`` is a Python file that compiles."""
    p = Path(path)
    if not p.exists():
        raise ScriptError(f"{path}: no such file", ExitCode.BAD_INPUT, str(path))
    if p.is_dir():
        raise ScriptError(f"{path}: is a directory, not a Python script", ExitCode.BAD_INPUT, str(path))
    try:
        source = p.read_bytes()
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read it ({exc.strerror})", ExitCode.BAD_INPUT, str(path)) from None
    first = source.split(b"\n", 1)[0]
    if p.suffix not in (".py", ".pyw") and not (first.startswith(b"#!") and b"python" in first):
        raise ScriptError(f"{path}: not a Python file (expected a .py script)", ExitCode.BAD_INPUT, str(path))
    if b"\x00" in source[:4096]:
        raise ScriptError(f"{path}: not a Python file (it is binary)", ExitCode.BAD_INPUT, str(path))
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)
        raise ScriptError(f"{where}: syntax error: {exc.msg}", ExitCode.SCRIPT_ERROR, str(path),
                          exc.lineno) from None
    except ValueError as exc:
        raise ScriptError(f"{path}: not a Python file ({exc})", ExitCode.BAD_INPUT, str(path)) from None
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
               scan_data: bool = False, plugins: dict[str, str] | None = None,
               dry_run: bool = False, nnodes: int = 1) -> RunResult:
    """Profile ``script`` in a child process; never raises for the script's own failures.

    Raises ScriptError for bad input (missing file, not Python, syntax error) before
    anything runs. ``on_event`` receives the child's progress events (one per step).
    ``stdout`` redirects the script's standard output (``--json`` keeps ccprof's stdout clean).
    ``tweak`` (one id or several) is applied to the live run at the first forward of the
    model (``--verify``), with ``tweak_options`` keyed by tweak id.
    ``nproc`` > 1 runs it under torchrun: each rank profiles itself, rank 0's profile carries
    the merge (``world_size``, ``ranks``).
    ``plugins`` names what the harness runs besides the script (``ccprof.api.RUN_PLUGINS``:
    the runtime applier for ``tweak``, the dataset scanner for ``scan_data``); the profiler
    imports neither. ``dry_run``: the script runs on fake tensors (``ccprof.profiler.dryrun``);
    with it ``nproc`` x ``nnodes`` is the world the script sees, one process tracing rank 0
    (``ccprof.profiler.dryrun_dist``): no torchrun, no other process.
    """
    if nnodes > 1 and not dry_run:
        raise ValueError("nnodes > 1 needs dry_run: a measured multi-node run is launched by torchrun ("
                         "`torchrun --nnodes ... -m ccprof run`)")
    if (tweak or scan_data) and not plugins:
        raise ValueError("a tweak or --scan-data needs plugins= naming what runs them (ccprof.api.RUN_PLUGINS)")
    script = str(script)
    check_script(script)
    with tempfile.TemporaryDirectory(prefix="ccprof-") as tmp:
        out = os.path.join(tmp, "profile.json")
        progress_path = os.path.join(tmp, "progress.jsonl")
        stop_path = os.path.join(tmp, "stop-reason")
        Path(progress_path).touch()
        spec = RunSpec(script=script, args=list(args or []), steps=steps, warmup=warmup, out=out,
                       progress_path=progress_path, stop_path=stop_path,
                       tweak=[tweak] if isinstance(tweak, str) else list(tweak or []),
                       tweak_options=dict(tweak_options or {}), seed=seed, timeout=timeout_s,
                       scan_data=scan_data, plugins=dict(plugins or {}), dry_run=dry_run,
                       dry_nproc=nproc if dry_run else 1, dry_nnodes=nnodes if dry_run else 1)
        launched = 1 if dry_run else nproc      # a dry run's ranks are one process
        spec_path = os.path.join(tmp, "spec.json")
        spec.to_json(spec_path)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        first_failure = os.path.join(tmp, "first-failed-rank")
        env["CCPROF_FIRST_FAILURE"] = first_failure
        dry_backups = os.path.join(tmp, "dry-backups")      # each dry run's copies of the user's files
        env[BACKUPS_ENV] = dry_backups
        cmd = [python or sys.executable]
        if launched > 1:
            cmd += ["-m", "ccprof.profiler.launch", "--standalone", f"--nproc_per_node={nproc}"]
        cmd += ["-m", "ccprof.profiler.harness", spec_path]
        last: dict[str, Any] = {}
        stopping = threading.Event()      # the child said it is writing what it measured
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
                    if event.get("event") == "stopping":
                        stopping.set()
                        continue
                    last.update(event)
                    if on_event is not None:
                        try:
                            on_event(event)
                        except Exception:
                            pass

        # the script runs in its own process group (its DataLoader workers and helpers too), so
        # a stop ends all of it; a Ctrl-C at the terminal reaches ccprof, which passes it on.
        # Under --nproc torchrun starts each rank in a session of its own: each rank's harness
        # writes its group id beside the profile, and a kill reaches those groups too.
        why = None          # None | "timeout" | "interrupted" | "terminated"
        code = ExitCode.SCRIPT_ERROR
        proc = None
        oom_before = _oom_kills()
        with _stop_signals_raise():
            try:
                proc = subprocess.Popen(cmd, env=env, stdout=stdout, start_new_session=True)
                reader = threading.Thread(target=pump, daemon=True)
                reader.start()
                try:
                    code = proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    why = "timeout"
                except KeyboardInterrupt:
                    why = "interrupted"
                except _Terminated:
                    why = "terminated"
                if why is not None:
                    Path(stop_path).write_text("timeout" if why == "timeout" else "terminated")
                    reason = {"timeout": f"the --timeout of {timeout_s:g} s", "interrupted": "Ctrl-C",
                              "terminated": "ccprof was sent SIGTERM"}[why]
                    code = _stop(proc, signal.SIGINT if why == "interrupted" else signal.SIGTERM, stopping, tmp,
                                 reason)
                    if why == "timeout" and getattr(stopping, "again", None):
                        why = stopping.again        # Ctrl-C / SIGTERM during the timeout's grace
            except (KeyboardInterrupt, _Terminated) as exc:     # a second signal at an awkward point
                why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated"
            finally:
                if proc is not None and proc.poll() is None:   # never leave the script running
                    _kill_all(proc, tmp)
                    code = proc.wait()
                elif proc is not None:      # what the script left running (a helper, a worker)
                    _kill_all(proc, tmp, leftovers_only=True)
                if proc is None:
                    return RunResult(None, ExitCode.INTERRUPTED if why == "interrupted" else ExitCode.TERMINATED,
                                     "stopped before the script started")
        done.set()
        reader.join(timeout=2)
        if dry_run:
            undo_left(dry_backups)       # what a process killed outright could not put back itself
        if launched > 1:
            profile = merge_ranks(out, nproc, _first_rank(first_failure))
        elif dry_run and os.path.exists(pipeline_path(out)):
            profile = merge_stages(out, _read_profile)      # a pipeline's stages, each traced as its own rank
        else:
            profile = _read_profile(out)
        sent = _sent(tmp)          # what ccprof itself signalled the run, before the folder goes
    interrupted, timed_out = why == "interrupted", why == "timeout"
    if why == "terminated":
        code = ExitCode.TERMINATED
    elif interrupted:
        code = ExitCode.INTERRUPTED
    seen = last.get("counters")
    if profile is None:
        if timed_out:
            msg = f"timed out after {timeout_s:g} s and the run could not report (killed)"
            code = ExitCode.NOTHING_MEASURED
        elif interrupted:
            msg = "interrupted before anything was measured"
        elif why == "terminated":
            msg = "stopped by SIGTERM before anything was measured"
        elif code < 0:
            msg = (f"the script's process died with signal {-code} ({_signame(-code)}): "
                   f"{who_sent(-code, sent, oom_before)}")
            code = ExitCode.SCRIPT_ERROR
        else:
            msg = f"the script's process exited with code {code} before anything was measured"
            code = ExitCode.SCRIPT_ERROR
        if seen:
            msg += f"; seen: {seen_text(seen)}"
        return RunResult(None, code, msg)
    if profile.error is not None and profile.error.kind == "died":
        # only the mid-run checkpoint is left: the process ended without writing the rest
        if timed_out:
            profile = _with_error(profile, "timeout", f"timed out after {timeout_s:g} s and killed; "
                                  + profile.error.message.replace("the run stopped before ccprof could finish it, ", ""))
            code = ExitCode.NOTHING_MEASURED
        elif why in ("interrupted", "terminated"):
            what = "interrupted (Ctrl-C)" if interrupted else "stopped by SIGTERM"
            profile = _with_error(profile, "interrupted" if interrupted else "terminated",
                                  f"{what} and killed; what was measured up to then is kept",
                                  ExitCode.INTERRUPTED if interrupted else ExitCode.TERMINATED)
        else:
            how = (f"died with signal {-code} ({_signame(-code)}: {who_sent(-code, sent, oom_before)})" if code < 0
                   else f"exited with code {code} without returning (os._exit, or a crash in native code)")
            profile = _with_error(profile, "died", f"the script's process {how}; "
                                  + profile.error.message.replace("the run stopped before ccprof could finish it, ", ""),
                                  ExitCode.SCRIPT_ERROR)
            code = ExitCode.SCRIPT_ERROR
    elif timed_out and profile.error is not None and profile.error.kind == "ended":
        profile = _with_error(profile, "timeout", f"timed out after {timeout_s:g} s")
    elif interrupted and profile.error is not None and profile.error.kind == "terminated":
        # under --nproc torchrun passes a Ctrl-C on to the ranks as SIGTERM
        profile = _with_error(profile, "interrupted", profile.error.message.replace(
            "stopped by SIGTERM", "interrupted (Ctrl-C)"), ExitCode.INTERRUPTED)
    elif profile.error is None and profile.status == "complete":
        if why in (None, "timeout"):
            code = 0        # measured in full: what the script did after the last step does not matter
    if timed_out and profile.error is not None:
        code = ExitCode.NOTHING_MEASURED         # whatever code the stop left (torchrun answers SIGTERM with 143)
    message = profile.error.message if profile.error else None
    if code not in set(ExitCode) - {ExitCode.STAGE_FAILED, ExitCode.VERIFY_FAILED, ExitCode.NOT_ALL_APPLIED}:
        code = ExitCode.SCRIPT_ERROR        # a rank's or torchrun's own code: the script failed
    return RunResult(profile, ExitCode(code), message)


def seen_text(counters: dict[str, Any], steps: int | None = None) -> str:
    """What the run had done: "5 forward calls, 5 backward, 5 optimizer steps, 5 steps"."""
    f = counters.get("forward_calls", 0) + counters.get("forward_calls_untrained", 0)
    text = (f"{f} forward calls, {counters.get('backward_calls', 0) or 'no'} backward, "
            f"{counters.get('optimizer_steps', 0) or 'no'} optimizer steps")
    return text if steps is None else f"{text}, {steps} steps"


def _read_profile(path: str) -> Profile | None:
    if not os.path.exists(path):
        return None
    try:
        return Profile.from_json(path)
    except (ValueError, OSError):
        return None


_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))


class _stop_signals_raise:
    """While the script runs: SIGTERM, SIGHUP (the terminal closed, ssh dropped) or SIGQUIT to
    ccprof raise _Terminated in the main thread, so the script is stopped with ccprof rather
    than left running. Only the main thread can set handlers (a notebook's worker thread
    changes nothing)."""

    def __enter__(self) -> "_stop_signals_raise":
        self.old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            def handler(signum: int, frame: Any) -> None:
                raise _Terminated()
            for sig in _STOP_SIGNALS:
                old = signal.signal(sig, handler)
                self.old[sig] = signal.SIG_DFL if old is None else old    # None: set from C
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)


_PEER_GONE = re.compile(r"Connection closed by peer|Connection reset by peer|remote worker|Broken pipe|"
                        r"communicator was aborted|NCCL error.*remote process exited", re.I)


def _first_rank(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def merge_ranks(out: str, nproc: int, first_failed: int | None = None) -> Profile | None:
    """Rank 0's profile with every rank's step time, peak memory and samples beside it.

    The step of a data-parallel job is as slow as its slowest rank, so ``steps.step_s``
    becomes the per-step maximum over ranks; samples per step add up to the global batch.
    """
    profiles = {}
    for r in range(nproc):
        path = f"{out}.rank{r}"
        if os.path.exists(path):
            prof = _read_profile(path)
            if prof is not None:
                profiles[r] = prof
    if 0 not in profiles:
        return None
    p0 = profiles[0]
    ranks = [rank_row(p, r) for r, p in sorted(profiles.items())]
    flag_stragglers(ranks)
    steps = merged_steps(p0, list(profiles.values()))
    # the error to show: a rank's own failure (its traceback) before the ranks torchrun then
    # stopped, named by rank; rank 0's otherwise
    errors = [(r, p.error) for r, p in sorted(profiles.items()) if p.error is not None]
    # a rank whose peer died fails on the closed connection, and torchrun then stops the rest:
    # those are consequences; the first rank torchrun saw fail, else the lowest, is the cause
    def consequence(e: ErrorInfo) -> bool:
        return e.kind in ("terminated", "interrupted", "timeout") or bool(_PEER_GONE.search(e.message or ""))

    ordered = sorted(errors, key=lambda re: (consequence(re[1]), re[0] != first_failed, re[0]))
    error = None
    if ordered:
        r, e = ordered[0]
        if len(profiles) > 1 or r != 0:
            e = replace(e, message=f"rank {r}: {e.message}",
                        traceback=(f"rank {r}: " + e.traceback) if e.traceback else e.traceback)
        error = e
    missing = [r for r in range(nproc) if r not in profiles]
    if missing and error is None:
        error = ErrorInfo(kind="died", exit_code=ExitCode.SCRIPT_ERROR,
                          message=f"rank(s) {', '.join(map(str, missing))} wrote no profile")
    return replace(p0, steps=steps, world_size=nproc, rank=0, ranks=ranks, error=error,
                   status="complete" if error is None else "partial")


def _with_error(profile: Profile, kind: str, message: str, exit_code: int = ExitCode.NOTHING_MEASURED) -> Profile:
    return replace(profile, error=ErrorInfo(kind=kind, message=message, exit_code=exit_code),
                   status="partial")


def _groups(proc: subprocess.Popen, tmp: str) -> list[int]:
    """The script's process groups: the child's own, and each torchrun rank's (its harness
    writes ``pgid.rank<N>`` in the temp folder: torchrun starts every rank in a new session)."""
    groups = [proc.pid]
    for p in Path(tmp).glob("pgid.rank*"):
        try:
            g = int(p.read_text().strip())
        except (OSError, ValueError):
            continue
        if g not in groups:
            groups.append(g)
    return groups


def _log_sent(tmp: str, sig: int, why: str) -> None:
    """Keep a line for every signal ccprof sends the run: a run that ends by a signal is then
    said to be ccprof's doing (and why), or not."""
    try:
        with open(os.path.join(tmp, SENT_LOG), "a") as fh:
            fh.write(f"{_signame(sig)}\t{why}\n")
    except OSError:
        pass


def _sent(tmp: str) -> list[tuple[str, str]]:
    try:
        lines = Path(tmp, SENT_LOG).read_text().splitlines()
    except OSError:
        return []
    return [tuple(line.split("\t", 1)) for line in lines if "\t" in line]


def _oom_kills() -> int | None:
    """The kernel's out-of-memory kills in this cgroup so far (cgroup v2 ``memory.events``)."""
    try:
        for line in Path("/sys/fs/cgroup/memory.events").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def who_sent(num: int, sent: list[tuple[str, str]], oom_before: int | None) -> str:
    """Who ended the run with signal ``num``, as far as ccprof can tell: ccprof itself (``sent``,
    its log of what it sent, with why), the kernel's out-of-memory killer (this cgroup's OOM kills
    went up), or neither."""
    name = _signame(num)
    mine = [why for sig, why in sent if sig == name]
    if mine:
        return f"sent by ccprof: {mine[-1]}"
    after = _oom_kills()
    if oom_before is not None and after is not None and after > oom_before:
        return f"the kernel's out-of-memory killer (this cgroup's OOM kills went from {oom_before} to {after})"
    return ("not sent by ccprof (it signals a run only to stop it: a timeout, Ctrl-C, SIGTERM, and sent none) "
            "and not the kernel's out-of-memory killer of this cgroup: another process, or the kernel for "
            "another reason, sent it")


def _signal_groups(proc: subprocess.Popen, tmp: str, sig: int, why: str) -> None:
    _log_sent(tmp, sig, why)
    if not hasattr(os, "killpg"):      # Windows: no process groups; the child alone
        try:
            proc.kill() if sig == getattr(signal, "SIGKILL", None) else proc.terminate()
        except OSError:
            pass
        return
    for g in _groups(proc, tmp):
        try:
            os.killpg(g, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(proc: subprocess.Popen, tmp: str) -> bool:
    if not hasattr(os, "killpg"):
        return proc.poll() is None
    for g in _groups(proc, tmp):
        try:
            os.killpg(g, 0)
            return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def _stop(proc: subprocess.Popen, sig: int, stopping: threading.Event, tmp: str, why: str) -> int:
    """Ask the script's process to stop (the harness, or torchrun, which passes it to the
    ranks; not the whole group: DataLoader workers dying first would turn the stop into a
    "worker exited unexpectedly" error); wait for it to write what it measured (up to GRACE_S
    once it said "stopping", ACK_S if it never does: a script that ignores the signal, a rank
    blocked in a collective), then SIGKILL every group of the run. A second Ctrl-C or
    SIGTERM meanwhile kills at once."""
    _log_sent(tmp, sig, why)
    try:
        proc.send_signal(sig)
    except OSError:
        pass
    t0 = wall_s()
    try:
        while True:
            try:
                return proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            if wall_s() - t0 > (GRACE_S if stopping.is_set() else ACK_S):
                break
    except KeyboardInterrupt:
        stopping.again = "interrupted"      # the user's own stop outranks the timeout's
    except _Terminated:
        stopping.again = "terminated"
    _kill_all(proc, tmp, why=f"{why}, and the script had not ended "
              + (f"{GRACE_S:g} s after saying it was stopping" if stopping.is_set()
                 else f"{ACK_S:g} s after the signal"))
    return proc.wait()


def _kill_all(proc: subprocess.Popen, tmp: str, leftovers_only: bool = False, why: str = "") -> None:
    """SIGKILL every group of the run (``leftovers_only``: the script's process has ended;
    what it left running gets SIGTERM first, SIGKILL after CHILDREN_GRACE_S)."""
    kill = getattr(signal, "SIGKILL", signal.SIGTERM)
    if leftovers_only:
        if not _alive(proc, tmp):
            return
        _signal_groups(proc, tmp, signal.SIGTERM, "what the script left running after it ended")
        t0 = wall_s()
        while wall_s() - t0 < CHILDREN_GRACE_S:
            if not _alive(proc, tmp):
                return
            time.sleep(0.05)
    _signal_groups(proc, tmp, kill, why or ("what the script left running after it ended, "
                                            f"{CHILDREN_GRACE_S:g} s after SIGTERM" if leftovers_only
                                            else "ccprof ended while the script ran"))


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "unknown"
