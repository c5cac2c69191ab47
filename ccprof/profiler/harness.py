"""The child process that runs the user's script, unmodified, under a profiling Session.

    python -m ccprof.profiler.harness SPEC.json

SPEC holds the script, its arguments, the step plan, where to write the Profile and,
for ``--verify``, which tweak to apply. The script runs in this process with
``runpy.run_path(..., run_name="__main__")``, its own ``sys.argv``, its folder first on
``sys.path`` and the cwd it was started in. Exit codes: 0 measured, 3 the script raised,
4 it ended / never trained / timed out, 130 interrupted, 143 terminated (SIGTERM).

What was measured is written as it is measured: a partial profile after each pass and every
few seconds of timed steps (``error.kind == "died"`` until replaced), the whole profile the
moment the last step ends. So a later ``os._exit``, segfault or SIGKILL still leaves a profile.

This module is the run loop; how a failure is told in the user's terms is in ``_harness_faults.py``,
the progress file, plugins and process plumbing in ``_harness_io.py``.
"""
from __future__ import annotations

import contextlib
import os
import random
import runpy
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch  # before sys.path changes: the user's folder must not shadow it

from ccprof.artefacts.profile import ErrorInfo, Finding
from ccprof.exit_codes import ExitCode
from ccprof.profiler._harness_faults import (  # noqa: F401  (user_frames: re-exported)
    _ccprof_fault,
    _is_oom,
    blame_frame,
    first_line,
    format_user_traceback,
    safe_str,
    user_frames,
)
from ccprof.profiler._harness_io import (
    _cwd_back,
    _die_with_parent,
    _find_optimizers,
    _find_schedulers,
    _flush,
    _plugin,
    _Progress,
    _scan_data,
    _static,
    _stop_reason,
)
from ccprof.profiler.clock import utc_now, wall_s
from ccprof.profiler.dryrun_pipe import PipelineFound, abort_stages, pipeline_path, run_stages
from ccprof.profiler.hooks import Session, StopProfiling, _Timeout
from ccprof.profiler.runner import seen_text
from ccprof.profiler.spec import RunSpec, run_environment

FINISH_GRACE_S = 30.0    # after the last measured step, time for the script to stop by itself


def run(spec: RunSpec, on_final: Callable[[Any], None] | None = None) -> int:
    """Run the script under a Session as ``spec`` says; return the exit code. ``on_final``
    (``ccprof run``): called with the whole profile right after the last measured step, on every
    rank at the same step, before the script is stopped (the ranks' profiles are gathered there)."""
    script = str(Path(spec.script).resolve())
    args = list(spec.args)
    rank = int(os.environ.get("RANK", "0"))
    out_path = spec.out if "WORLD_SIZE" not in os.environ else f"{spec.out}.rank{rank}"
    progress = _Progress(spec.progress_path if rank == 0 else None)
    applied: list[dict[str, Any]] = []
    tweaks = list(spec.tweak)
    options_by_tweak = spec.tweak_options     # tweak id -> its options' fields (JSON)
    # what the harness runs besides the script is handed to it by name (the profiler imports no
    # advisor or applier): "apply" -> the runtime applier module (--verify), "scan" -> the
    # dataset scanner (--scan-data), as "module" or "module:function"
    plugins: dict[str, str] = dict(spec.plugins)
    applied_to: list[torch.nn.Module] = []

    def on_step(done: int, total: int, step_s: float, loss: float | None) -> None:
        progress(event="step", done=done, total=total, step_s=step_s, loss=loss,
                 counters=dict(session.counters))

    def on_first_forward(sess: Session, model: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if not tweaks:
            return
        runtime = _plugin(plugins, "apply")
        RunObjects, apply_tweak = runtime.RunObjects, runtime.apply_tweak
        loaders = [r() for r in sess.loaders if r() is not None]
        optimizers = _find_optimizers(model)
        objs = RunObjects(model=model, optimizers=optimizers, dataloaders=loaders,
                          example_args=tuple(args), example_kwargs=dict(kwargs),
                          schedulers=_find_schedulers(optimizers) if optimizers else [])
        applied_to.append(model)
        for tw in tweaks:
            if hooked.get(tw):
                # the DataLoader hook already applied it, before the loader's first batch: that is
                # the tweak applied (applying it again would only find it done)
                applied.append({"tweak": tw, "applied": True, "changes": list(hooked[tw]),
                                "reason": "applied to the DataLoader before its first batch", "already_applied": False})
                continue
            try:
                result = apply_tweak(tw, objs, options=runtime.run_options(tw, options_by_tweak.get(tw)))
                applied.append({"tweak": tw, "applied": bool(result.applied), "reason": result.reason,
                                "changes": list(result.changes),
                                "already_applied": bool(getattr(result, "already_applied", False))})
            except Exception as exc:
                applied.append({"tweak": tw, "applied": False, "reason": f"failed: {exc!r}", "changes": []})

    loader_hooks: list[tuple[str, Any]] = []
    hooked: dict[str, list[str]] = {}          # tweak -> what its DataLoader hook changed
    if tweaks:
        runtime = _plugin(plugins, "apply")
        for tw in tweaks:
            hook = runtime.dataloader_hooks(tw, runtime.run_options(tw, options_by_tweak.get(tw)))
            if hook:
                loader_hooks.append((tw, hook))

    def on_loader_iter(loader: Any) -> None:
        for tw, hook in loader_hooks:
            changed = hook(loader)
            if changed:
                hooked.setdefault(tw, []).extend(changed)

    _die_with_parent()
    if "WORLD_SIZE" in os.environ:
        # torchrun starts each rank in a session of its own: tell the parent which group to kill
        try:
            Path(os.path.dirname(spec.out), f"pgid.rank{rank}").write_text(str(os.getpgid(0)))
        except OSError:
            pass
    cwd = os.getcwd()          # the script may delete or leave its cwd; the profile names this one
    state: dict[str, Any] = {"final": False, "static": None}

    def seen() -> str:
        return seen_text(session.counters, session.step_index)

    def write(profile: Any) -> None:
        """Atomically: the parent never reads half a file, whenever this process dies."""
        tmp = f"{out_path}.tmp"
        profile.to_json(tmp)
        os.replace(tmp, out_path)

    def assemble(error: ErrorInfo | None, findings: list[Finding], *, cheap: bool = False,
                 outcome: str = "") -> Any:
        if spec.dry_run:
            from torch.utils._python_dispatch import _disable_current_modes
            with _disable_current_modes():      # ccprof's own arithmetic is real, not fake
                return _assemble(error, findings, cheap=cheap, outcome=outcome)
        return _assemble(error, findings, cheap=cheap, outcome=outcome)

    def _assemble(error: ErrorInfo | None, findings: list[Finding], *, cheap: bool = False,
                  outcome: str = "") -> Any:
        if state["static"] is None:
            state["static"] = _static(script, args)
        static = state["static"]
        if static.parsed and session.step_index >= session.warmup:
            from ccprof.profiler.static import (
                reconcile,  # here: nothing extra is imported into the user's process before it is needed
            )

            static = reconcile(static, session.runtime_facts())
        env = run_environment(spec, cwd=cwd, started_at=started, finished_at=utc_now())
        extra: dict[str, Any] = {}
        if applied and applied_to:
            notes = _plugin(plugins, "apply").runtime_notes(applied_to[0])
            for entry in applied:
                if notes.get(entry["tweak"]):
                    entry["notes"] = notes[entry["tweak"]]
        if applied:
            extra["applied"] = applied
        if state.get("dry_log") is not None:
            from ccprof.profiler.dryrun import describe
            extra["dry_run"] = describe(state["dry_log"], world=(spec.dry_nproc, spec.dry_nnodes), rank=spec.dry_rank)
        profile = session.build_profile(
            cheap=cheap, static=static, environment=env, error=error,
            status="complete" if error is None else "partial", **extra,
        )
        if findings:
            profile = replace(profile, findings=list(profile.findings) + findings)
        if spec.dry_run:
            profile = replace(profile, data=_untimed_batches(profile.data))
        if spec.scan_data and outcome == "complete":
            profile = _scan_data(profile, session, progress, plugins)
        if spec.dry_run:
            # the rank traced: 0, or a pipeline stage's own (dryrun_pipe.run_stages)
            profile = replace(profile, world_size=spec.dry_nproc * spec.dry_nnodes, rank=spec.dry_rank)
        elif "WORLD_SIZE" in os.environ:
            profile = replace(profile, world_size=int(os.environ["WORLD_SIZE"]), rank=rank)
        return profile

    def on_checkpoint() -> None:
        if state["final"]:
            return
        write(assemble(ErrorInfo(kind="died", exit_code=ExitCode.SCRIPT_ERROR,
                                 message=f"the run stopped before ccprof could finish it, after {seen()}"),
                       [], cheap=True))

    def on_complete() -> None:
        """The last measured step ended: write the whole profile now, before StopProfiling goes
        into the script, so a script that swallows it (``except BaseException``) or will not
        stop cannot cost the measurement. Then the script unwinds as it would (its ``finally``
        blocks run); if it trains on instead (a module is called again) or has not ended after
        FINISH_GRACE_S, this process ends with exit 0."""
        session.uninstall()
        _ack_only()                 # a stop signal now must not cut the write short
        try:
            final = assemble(None, [], outcome="complete")
            write(final)
        except Exception:           # written again, the usual way, once the script has stopped
            return
        finally:
            _arm()
        state["final"] = True
        if on_final is not None:
            on_final(final)
        progress(event="done", code=ExitCode.OK)

        def end_now(*_: Any) -> None:
            _flush()
            os._exit(ExitCode.OK)

        state["after_final"] = torch.nn.modules.module.register_module_forward_pre_hook(end_now)

        def end_anyway() -> None:
            time.sleep(FINISH_GRACE_S)
            end_now()
        threading.Thread(target=end_anyway, daemon=True, name="ccprof-finish").start()

    # DataLoader workers write their batch times here (the runner removes the folder); extra
    # timed steps, while the host figures' spread is unknown, stop at half the timeout
    scratch = os.path.join(os.path.dirname(os.path.abspath(spec.out)), f"batches-rank{rank}")
    try:
        os.makedirs(scratch, exist_ok=True)
    except OSError:
        scratch = None
    deadline = wall_s() + 0.5 * spec.timeout if spec.timeout else None
    # a dry run times nothing: one plain step after the FLOP, memory and Python passes is enough
    session = Session(steps=1 if spec.dry_run else spec.steps, warmup=spec.warmup,
                      on_step=on_step, on_first_forward=on_first_forward,
                      on_loader_iter=on_loader_iter if loader_hooks else None,
                      on_checkpoint=on_checkpoint, on_complete=on_complete,
                      scratch_dir=scratch, deadline=deadline, script=script)
    session.dry_run = spec.dry_run
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or spec.dry_run:
        # a dry run's host times are fake tensors' bookkeeping: more of them say nothing
        session.extend_steps = False        # every rank stops at the same step (HostClock.extend_steps)
    if spec.seed is not None:
        torch.manual_seed(spec.seed)
        random.seed(spec.seed)

    def ack(signum: int, frame: Any) -> None:
        """While ccprof writes what was measured: say so (the parent then waits its grace
        period instead of killing after ACK_S) and go on writing."""
        progress(event="stopping", signal=signum)

    def _ack_only() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, ack)

    def on_term(signum: int, frame: Any) -> None:
        _ack_only()           # one-shot: a second signal (Slurm signals every process) must not
        ack(signum, frame)    # interrupt the unwinding and the write of the profile
        if hasattr(signal, "SIGCHLD"):
            # workers a whole-job SIGTERM ended are not the script's failure (torch's SIGCHLD
            # handler would raise "DataLoader worker exited unexpectedly" over the stop)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        raise _Timeout()

    def on_int(signum: int, frame: Any) -> None:
        _ack_only()
        ack(signum, frame)
        raise KeyboardInterrupt()

    def _arm() -> None:
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_int)

    user_handlers = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))

    def _child_handlers() -> None:
        # a process the script forks (a DataLoader worker) gets Python's own handlers back, not
        # ccprof's: a stop signal sent to the whole group must not make it raise ccprof's _Timeout
        for sig, h in zip((signal.SIGTERM, signal.SIGINT), user_handlers):
            try:
                signal.signal(sig, h if h is not None else signal.SIG_DFL)
            except (OSError, ValueError, TypeError):
                pass

    os.register_at_fork(after_in_child=_child_handlers)
    _arm()
    started = utc_now()
    sys.argv = [spec.script] + args
    sys.path[0] = str(Path(script).parent)
    error: ErrorInfo | None = None
    findings: list[Finding] = []
    code = ExitCode.OK
    stop_reason = "timeout"
    session.install()
    dry = contextlib.nullcontext()
    if spec.dry_run:
        from ccprof.profiler.dryrun import dry_run
        # the script sees a GPU (its CUDA branches run: dryrun_cuda), or a node's GPUs as rank 0
        # of --nproc x --nnodes ranks (dryrun_dist)
        dry = dry_run(cuda=True, world=(spec.dry_nproc, spec.dry_nnodes), rank=spec.dry_rank, out=spec.out,
                      traced=spec.dry_stage_ranks, timeout_s=spec.timeout)
    try:
        with dry as dry_log:
            state["dry_log"] = dry_log
            runpy.run_path(script, run_name="__main__")
        outcome = "ended"
    except StopProfiling:
        outcome = "complete"
    except SystemExit as exc:
        outcome = "ended"
        if exc.code not in (None, 0):
            outcome = "exited"
            error = ErrorInfo(kind="script_error", exit_code=ExitCode.SCRIPT_ERROR,
                              message=f"the script called sys.exit({exc.code!r}) before "
                                      f"{session.total_steps} steps")
    except PipelineFound:
        outcome = "pipeline"          # main() traces the pipeline's stages, each as its own rank
    except _Timeout:
        outcome = "timeout"
        stop_reason = _stop_reason(spec)
    except KeyboardInterrupt:
        outcome = "interrupted"
    except BaseException as exc:  # the user's error, reported in their terms
        outcome = "error"
        _cwd_back(cwd)
        file, line = blame_frame(exc, script)
        tb = format_user_traceback(exc)
        ours = _ccprof_fault(exc)
        if _dry_unsupported(exc):
            # the script needs what a dry run does not have: the script's line, not ccprof's fault
            error = ErrorInfo(kind="dry_run_unsupported", exit_code=ExitCode.SCRIPT_ERROR, traceback=tb,
                              file=file, line=line, message=f"{first_line(exc)[:500]} ({file}:{line})")
        elif ours is not None:
            # ccprof's own code failed inside a call of the script (a hook): not the user's bug
            error = ErrorInfo(kind="ccprof_error", exit_code=ExitCode.SCRIPT_ERROR, file=file, line=line,
                              message=f"ccprof failed inside the script's call at {file}:{line} "
                                      f"({type(exc).__name__}: {first_line(exc)[:300]} in ccprof's {ours}); "
                                      "the script itself did not fail; please report this")
        elif _is_oom(exc):
            session.keep_memory_at_failure()
            findings.append(Finding("oom", f"out of memory: {first_line(exc)[:300]}", file, line))
            error = ErrorInfo(kind="oom", exit_code=ExitCode.SCRIPT_ERROR, traceback=tb, file=file, line=line,
                              message=f"out of memory at {file}:{line} after {session.step_index} steps")
        else:
            error = ErrorInfo(kind="script_error", exit_code=ExitCode.SCRIPT_ERROR, traceback=tb,
                              file=file, line=line,
                              message=f"{type(exc).__name__}: {first_line(exc)[:500]} ({file}:{line})")
    finally:
        _ack_only()             # from here on, finish writing what was measured
        session.uninstall()
        if state.get("after_final") is not None:
            state["after_final"].remove()
    _cwd_back(cwd)
    if outcome == "pipeline":
        return ExitCode.OK
    if state["final"]:
        # the whole profile was written when the last step ended; whatever the script did
        # after StopProfiling (swallow it, exit, raise) does not change the measurement
        return ExitCode.OK

    if (outcome == "ended" or (outcome == "timeout" and stop_reason == "timeout")) and error is None \
            and session.measured_enough():
        # the steps asked for were measured; the script ended (or the timeout came) while ccprof
        # timed extra steps to know their spread: the profile is complete with what it has
        outcome = "complete"
    if outcome in ("ended", "timeout", "interrupted") and error is None:
        if outcome == "interrupted":
            error = ErrorInfo(kind="interrupted", exit_code=ExitCode.INTERRUPTED,
                              message=f"interrupted (Ctrl-C) after {seen()}")
        elif outcome == "timeout" and stop_reason == "terminated":
            error = ErrorInfo(kind="terminated", exit_code=ExitCode.TERMINATED,
                              message=f"stopped by SIGTERM after {seen()}")
        elif session.counters["backward_calls"] == 0:
            error = ErrorInfo(kind="no_training", exit_code=ExitCode.NOTHING_MEASURED,
                              message=f"the script never trained: {seen()}"
                                      + (" (timed out)" if outcome == "timeout" else ""))
        elif outcome == "timeout":
            error = ErrorInfo(kind="timeout", exit_code=ExitCode.NOTHING_MEASURED,
                              message=f"timed out after {spec.timeout if spec.timeout is not None else '?'} s: {seen()}")
        else:
            error = ErrorInfo(kind="ended", exit_code=ExitCode.NOTHING_MEASURED,
                              message=f"the script ended before {session.total_steps} steps "
                                      f"({session.warmup} warm-up + measurement): {seen()}")
    if error is not None:
        code = error.exit_code
        if spec.dry_run and spec.dry_stage_ranks and error.kind not in ("terminated", "interrupted"):
            # the pipeline's other stages may wait for this one's objects: they stop now, not at --timeout
            abort_stages(spec.out, spec.dry_rank, error.message)
    write(assemble(error, findings, outcome=outcome))
    progress(event="done", code=code)
    return code


def _untimed_batches(data: Any) -> Any:
    """A dry run's batches are made of fake tensors, whose Python bookkeeping is no measure of
    the real loader's time: the batch time is left unknown (the cost model then counts no data
    wait) and the profile says why."""
    return replace(data, batch_s=None, batch_s_lo=None, batch_s_hi=None, batch_io_s=0.0,
                   batch_s_method="not timed: a --dry-run makes its batches of fake tensors")


def _dry_unsupported(exc: BaseException) -> bool:
    from ccprof.profiler.dryrun import DryRunUnsupported
    return isinstance(exc, DryRunUnsupported)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    spec = RunSpec.from_json(argv[0])
    start = os.getcwd()         # the script may change folders; a pipeline's stages start here, as it did
    try:
        code = run(spec)
        if code == ExitCode.OK and spec.dry_run and not spec.dry_stage_ranks \
                and os.path.exists(os.path.join(start, pipeline_path(spec.out))):
            code = run_stages(spec, argv[0], cwd=start)
    except BaseException as exc:     # ccprof's own fault, after the script: say so in one line
        _flush()
        print(f"ccprof: internal error in the profiling harness ({type(exc).__name__}: {safe_str(exc)[:300]}); "
              "what was measured before it, if anything, is kept", file=sys.stderr)
        code = 1
    _flush()
    os._exit(code)  # skip atexit of the user's script (workers, loggers) that may hang


if __name__ == "__main__":
    main()
