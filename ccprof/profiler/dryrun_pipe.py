"""Pipelines in the world dry run: every stage traced by a dry run of its own rank.

A pipeline's ranks differ in work (the first stage embeds, the last one computes the loss), so
rank 0 alone does not show the step. When rank 0's dry run reaches a pipeline schedule's first
step (``torch.distributed.pipelining``) whose stages sit on other ranks too, it writes the
schedule's stage -> rank map beside its profile and stops (``PipelineFound``); its harness then
starts one dry run per distinct rank of the pipeline, all at once (:func:`run_stages`), each the
rank it traces in torchrun's environment and the fake process group. The stages exchange Python
objects (their input and gradient shapes, before the first step) through a real channel, a
``torch.distributed.FileStore`` file that every stage's process opens (:class:`ObjectChannel`:
the receiver polls until the sender's key is there, a stage that failed aborts the channel, or the
run's timeout passes); tensor sends and receives stay fake (a
completed Work, no data), recorded as op rows like every collective. The runner merges the
stages' profiles (:func:`merge_stages`): each rank's op rows, FLOPs, peaks, optimizers, host
counts and fusion groups (what costing its step reads) in ``DryRun.pipeline.ranks``, the profile of the rank with the largest peak around them (it sets
the memory per GPU). ``ccprof.hardware.pipeline`` schedules the stages' costs into the step.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

from ccprof.profiler._dry_journal import BACKUPS_ENV, DEFER_ENV, undo_left

__all__ = ["PipelineFound", "ObjectChannel", "abort_stages", "pipeline_path", "stage_out", "watch_schedules", "run_stages",
           "merge_stages"]


class PipelineFound(BaseException):
    """Rank 0's dry run reached a pipeline whose stages sit on several ranks: each is traced again
    by a dry run of its own rank (a BaseException: the script's ``except Exception`` cannot stop it)."""


def pipeline_path(out: str) -> str:
    """Where rank 0's dry run writes the pipeline it found (the schedule, the stage -> rank map)."""
    return f"{out}.pipeline.json"


def stage_out(out: str, rank: int) -> str:
    """Where the dry run of a pipeline's rank ``rank`` writes its profile."""
    return f"{out}.stage-rank{rank}"


def _channel_path(out: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(out)), "pipeline-objects")     # beside every stage's profile


ABORT_KEY = "abort"         # set by a stage that failed (or by run_stages): its peers stop waiting for it
POLL_S = 0.1                # how often a receiver looks for its object, the abort and its deadline


class ObjectChannel:
    """Python objects between the stages' dry runs: ``send`` sets one key per (source, destination,
    sequence number) in a FileStore all of them open; ``recv`` waits until its key is set, another
    stage stopped (:meth:`abort`) or ``timeout_s`` passed, polling (a wait inside FileStore's C++
    ``get`` would not let Python's signal handlers run: a SIGTERM would wait for it)."""

    def __init__(self, out: str, rank: int, timeout_s: float = 600.0) -> None:
        import torch.distributed as dist
        self.rank = rank
        self.timeout_s = timeout_s
        self.store = dist.FileStore(_channel_path(out), -1)
        self.store.set_timeout(timedelta(seconds=timeout_s))
        self._sent: Counter[int] = Counter()
        self._got: Counter[int] = Counter()

    def send(self, obj: Any, dst: int) -> None:
        n = self._sent[dst]
        self._sent[dst] += 1
        self.store.set(f"{self.rank}->{dst}#{n}", pickle.dumps(obj))

    def recv(self, src: int) -> Any:
        from ccprof.profiler.dryrun import DryRunUnsupported
        n = self._got[src]
        self._got[src] += 1
        key = f"{src}->{self.rank}#{n}"
        deadline = time.monotonic() + self.timeout_s
        while not self.store.check([key]):
            if self.store.check([ABORT_KEY]):
                raise DryRunUnsupported(self.store.get(ABORT_KEY).decode("utf-8", "replace"))
            if time.monotonic() > deadline:
                raise DryRunUnsupported(f"no message from rank {src} within {self.timeout_s:g} s: the pipeline's "
                                        "stages did not exchange their shapes (raise --timeout if the stage "
                                        "before this one is slow to build)")
            time.sleep(POLL_S)
        return pickle.loads(self.store.get(key))

    def abort(self, message: str) -> None:
        """Every stage waiting for an object stops with ``message`` (the first abort's stays)."""
        if not self.store.check([ABORT_KEY]):
            self.store.set(ABORT_KEY, message)


def abort_stages(out: str, rank: int, message: str) -> None:
    """The pipeline's stages traced beside ``out`` stop waiting: ``rank`` stopped with ``message``."""
    try:
        ObjectChannel(out, rank).abort(f"stage on rank {rank} stopped: {message}")
    except Exception:       # noqa: BLE001 - no channel (its folder is gone): nobody is waiting on it
        pass


def watch_schedules(log: Any, patches: Any, out: str | None, traced: list[int]) -> bool:
    """At a pipeline schedule's step, ``log.pipeline`` gets its schedule, microbatches and stage -> rank
    map; on rank 0's first dry run (``traced`` empty) a pipeline spanning several ranks is written to
    :func:`pipeline_path` and the run stops with :class:`PipelineFound`. Returns whether it watches:
    False on a torch without the (private, recent) hook it needs; pipelines are then not detected and
    a stage's ``recv_object_list`` stops the dry run as any other rank's does."""
    try:
        from torch.distributed.pipelining import schedules
        from torch.distributed.pipelining.stage import _PipelineStageBase
    except ImportError:                 # torch < 2.4: no torch.distributed.pipelining
        return False
    hook = schedule_hook(schedules, _PipelineStageBase)
    if hook is None:
        return False
    base, original = hook

    def initialize(self: Any, stages: list, *args: Any, **kwargs: Any) -> Any:
        first = stages[0]
        stage_rank = [int(first._resolve_peer_global_rank(i)) for i in range(first.num_stages)]
        ranks = sorted(set(stage_rank))
        log.pipeline = {"schedule": type(self).__name__, "microbatches": int(self._n_microbatches),
                        "num_stages": int(first.num_stages), "stage_rank": stage_rank,
                        "stages": sorted(int(s.stage_index) for s in stages)}
        if out and not traced and len(ranks) > 1:
            with open(pipeline_path(out), "w") as fh:
                json.dump(log.pipeline, fh)
            raise PipelineFound(f"a pipeline of {first.num_stages} stages on ranks {ranks}")
        if len(ranks) > 1:
            log.assume(f"{type(self).__name__} ran {first.num_stages} pipeline stages on ranks "
                       f"{ranks}, each traced by a dry run of its own rank; the stages' "
                       "shapes crossed between them, their tensors did not (every send and receive completes "
                       "at once).")
        return original(self, stages, *args, **kwargs)
    patches.set(base, "_initialize_pp_stages", initialize)
    _tag_p2p_ops(patches, _PipelineStageBase)
    return True


# a stage's getters of its sends and receives, and the phase of what each moves
P2P_GETTERS = {"get_fwd_recv_ops": "forward", "get_fwd_send_ops": "forward",
               "get_bwd_recv_ops": "backward", "get_bwd_send_ops": "backward"}


def _tag_p2p_ops(patches: Any, stage_base: Any) -> None:
    """The schedule's sends and receives are booked to the phase of its action that made them
    (activations: forward; gradients: backward), not to the phase that ran last: the schedule waits
    on them between its stages' forward and backward calls, outside every hook that sets the phase
    (``_flop_ops.tag_p2p``). A torch whose stages lack a getter keeps the phase clock's for it."""
    from ccprof.profiler._flop_ops import tag_p2p

    for name, phase in P2P_GETTERS.items():
        original = getattr(stage_base, name, None)
        if original is None:
            continue

        def tagged(self: Any, *args: Any, _original: Any = original, _phase: str = phase, **kwargs: Any) -> Any:
            ops = _original(self, *args, **kwargs)
            for op in ops or ():
                tensor = getattr(op, "tensor", None)
                if tensor is not None:
                    tag_p2p(tensor, _phase)
            return ops
        patches.set(stage_base, name, tagged)


def schedule_hook(schedules: Any, stage_base: Any) -> tuple[Any, Any] | None:
    """(the schedules' base class, its ``_initialize_pp_stages``) where this torch has the private
    hooks a pipeline is found by (that method, and the stages' ``_resolve_peer_global_rank``), else
    None: ``schedules`` is ``torch.distributed.pipelining.schedules``, ``stage_base`` its stages' base."""
    base = getattr(schedules, "_PipelineSchedule", None)
    original = getattr(base, "_initialize_pp_stages", None) if base is not None else None
    if original is None or getattr(stage_base, "_resolve_peer_global_rank", None) is None:
        return None
    return base, original


def run_stages(spec: Any, spec_path: str, cwd: str | None = None) -> int:
    """Rank 0 found a pipeline (:func:`pipeline_path`): run one dry run per rank of it, concurrently,
    each a harness of its own rank writing :func:`stage_out`, started in ``cwd`` (the folder rank 0's
    harness started in: its script may have changed folders since; None: this one) where
    ``spec.script`` and ``spec_path``, if relative, are found. The first failure stops the others
    (their object channel is aborted, then they get SIGTERM), and a SIGTERM or SIGINT sent to this
    process is passed on to every stage. Returns the first failing rank's exit code, else 0."""
    cwd = cwd or os.getcwd()
    # absolute paths (os.path.join keeps one that is): this process may be in another folder
    spec = replace(spec, script=os.path.join(cwd, spec.script), out=os.path.join(cwd, spec.out))
    spec_path = os.path.join(cwd, spec_path)
    with open(pipeline_path(spec.out)) as fh:
        info = json.load(fh)
    ranks = sorted(set(info["stage_rank"]))
    procs: dict[int, subprocess.Popen] = {}
    codes: dict[int, int] = {}
    listed = os.environ.get(BACKUPS_ENV)

    def forward(signum: int, frame: Any) -> None:
        for k, p in procs.items():
            if k not in codes:
                p.send_signal(signum)
    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for r in ranks:
            path = f"{spec_path}.rank{r}"
            replace(spec, out=stage_out(spec.out, r), dry_rank=r, dry_stage_ranks=ranks,
                    progress_path=spec.progress_path if r == 0 else None).to_json(path)
            env = dict(os.environ, RANK=str(r))     # the harness's scratch folder and progress follow it
            if listed:      # the stages' changes to the user's files are undone here, together, once they end
                env[DEFER_ENV] = "1"
            procs[r] = subprocess.Popen([sys.executable, "-m", "ccprof.profiler.harness", path], env=env, cwd=cwd)
        first = 0
        while len(codes) < len(procs):
            pid, status = os.wait()
            r = next((k for k, p in procs.items() if p.pid == pid), None)
            if r is None:
                continue
            procs[r].returncode = code = os.waitstatus_to_exitcode(status)
            codes[r] = code
            if code != 0 and not first:
                first = code if code > 0 else 3
                # a stage waiting for this one's objects would wait forever: it stops at its next poll
                abort_stages(spec.out, r, f"exit code {code}" + ("" if os.path.exists(stage_out(spec.out, r))
                                                                 else " without a profile"))
                for k, p in procs.items():
                    if k not in codes:
                        p.send_signal(signal.SIGTERM)
        return first
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if listed and len(codes) == len(procs):
            # every stage left its journal: undone in the one order of all their changes (a log every
            # stage appended to gets back the copy made before the first stage's append)
            undo_left(listed)


def merge_stages(out: str, read: Any) -> Any:
    """The pipeline's profile from its ranks' (``read(path)`` -> Profile or None): the profile of the
    rank with the largest peak (it sets the memory per GPU), with every rank's op rows, FLOPs,
    peaks, optimizers, host counts and fusion groups in ``dry_run.pipeline.ranks``. None when no rank wrote a profile."""
    from ccprof.artefacts.profile import ErrorInfo, Pipeline, PipelineRank
    from ccprof.exit_codes import ExitCode

    with open(pipeline_path(out)) as fh:
        info = json.load(fh)
    ranks = sorted(set(info["stage_rank"]))
    profiles = {r: p for r in ranks if (p := read(stage_out(out, r))) is not None}
    if not profiles:
        return None
    rows = [PipelineRank(rank=r, stages=[i for i, x in enumerate(info["stage_rank"]) if x == r], ops=list(p.ops),
                         flops_per_step=p.flops.per_step, model_flops_per_step=p.flops.model_per_step,
                         peak_bytes=p.memory.peak_bytes, reserved_peak_bytes=p.memory.reserved_peak_bytes,
                         params=p.model.params, optimizers=list(p.optimizer.optimizers) if p.optimizer else [],
                         host=p.host, fusion=dict(p.fusion)) for r, p in sorted(profiles.items())]
    heaviest = max(profiles, key=lambda r: (profiles[r].memory.reserved_peak_bytes or profiles[r].memory.peak_bytes,
                                            -r))
    base = profiles[heaviest]
    pipeline = Pipeline(schedule=info["schedule"], microbatches=info["microbatches"], num_stages=info["num_stages"],
                        stage_rank=list(info["stage_rank"]), ranks=rows)
    errors = [(r, p.error) for r, p in sorted(profiles.items()) if p.error is not None]
    # a stage stopped because a peer failed (terminated, or its wait for the peer's objects ended):
    # the peer's own error is the cause, and a peer that crashed without a profile is one too
    caused = [(r, e) for r, e in errors if not _stopped_by_peer(e)]
    missing = [r for r in ranks if r not in profiles]
    error = None
    if caused or (errors and not missing):
        r, e = (caused or errors)[0]
        held = [i for i, x in enumerate(info["stage_rank"]) if x == r]
        error = replace(e, message=f"rank {r} (pipeline stage(s) {held}): {e.message}")
    elif missing:
        error = ErrorInfo(kind="died", exit_code=ExitCode.SCRIPT_ERROR,
                          message=f"pipeline rank(s) {', '.join(map(str, missing))} wrote no profile")
    dry = replace(base.dry_run, rank=heaviest, pipeline=pipeline) if base.dry_run is not None else None
    return replace(base, dry_run=dry, error=error, status="complete" if error is None else "partial")


def _stopped_by_peer(error: Any) -> bool:
    """A stage's error that another stage caused: stopped (SIGTERM, Ctrl-C, the timeout) or its wait
    for a peer's objects ended (:meth:`ObjectChannel.recv`)."""
    return error.kind in ("terminated", "interrupted", "timeout") or (
        error.kind == "dry_run_unsupported" and error.message.startswith(("stage on rank ", "no message from rank ")))
