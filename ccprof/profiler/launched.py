"""``ccprof run``: profile every rank of a job a launcher already started, where it runs.

    torchrun --nnodes 2 --nproc-per-node 4 ... -m ccprof run train.py ARGS
    srun -N 2 --ntasks-per-node 4 python -m ccprof run train.py ARGS
    accelerate launch -m ccprof run train.py ARGS

The launcher made the ranks; each one runs the script in its own process under the harness
(no child process of ccprof's). After the measured steps, every rank is at the same step (each
stops after the same optimizer step, ``Session`` times no extra step under a launcher), and
the ranks' profiles go to rank 0 through ``torch.distributed``: over the script's own process
group when it is gloo, over a gloo group of ccprof's next to it when it is NCCL (gloo carries
Python objects on the host), over a group made from the launcher's env when the script has
none. Never through a file system: the nodes need not share one.
"""
from __future__ import annotations

import os
import socket
import statistics
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from ccprof.artefacts.profile import Profile, Steps
from ccprof.artefacts.vocab import STEP_PHASES

__all__ = ["Launch", "flag_stragglers", "merged_steps", "own_work_s", "rank_row", "gather_profiles", "launch_from_env", "merge_profiles",
           "STRAGGLER_EXCESS_FRAC", "STRAGGLER_MIN_EXCESS_S"]

GATHER_TIMEOUT_S = 300.0      # a rank that never reaches the end of its measured steps: give up on it

# A rank is a straggler when its own work per step (step time, or, where the ranks synchronise in
# backward as DDP does, the time outside backward: the others wait for it inside theirs) exceeds
# the ranks' median by more than this fraction of the median step. The ranks of a data-parallel
# job do the same work on same-sized batches, so their times agree up to noise; DDP all-reduces
# gradients during backward, so every rank's step is as long as the slowest one's (Li et al.,
# "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB 2020, sec. 3.2).
STRAGGLER_EXCESS_FRAC = 0.10
# ... and by more than this many seconds: on a shared host, scheduling alone moves a rank's
# millisecond-long step by a fraction of a millisecond (measured here: 0.5 ms of 4 ms steps, two
# CPU ranks, no rank slowed), which is not a rank the job waits for
STRAGGLER_MIN_EXCESS_S = 0.002


@dataclass(frozen=True)
class Launch:
    """Where this process sits in the job, as its launcher told it."""

    rank: int
    world_size: int
    local_rank: int
    node_rank: int
    hostname: str
    launcher: str            # "torchrun" (torchrun, accelerate launch, any env:// launcher) | "slurm" | "none"


def launch_from_env(environ: dict[str, str] | None = None) -> Launch:
    """Read the launcher's variables: RANK/WORLD_SIZE/LOCAL_RANK (torchrun, accelerate launch),
    else SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID (srun). Under srun the torchrun names are set
    from Slurm's (and MASTER_ADDR/MASTER_PORT, when unset, to the launch node and 29500) so the
    script's own ``init_process_group()`` finds them. Writes ``environ`` (os.environ by default)."""
    env = os.environ if environ is None else environ
    host = socket.gethostname()
    if "RANK" in env and "WORLD_SIZE" in env:
        return Launch(rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]),
                      local_rank=int(env.get("LOCAL_RANK", "0")),
                      node_rank=int(env.get("GROUP_RANK", env.get("NODE_RANK", env.get("SLURM_NODEID", "0")))),
                      hostname=host, launcher="torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        env["RANK"] = env["SLURM_PROCID"]
        env["WORLD_SIZE"] = env["SLURM_NTASKS"]
        env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
        env.setdefault("MASTER_ADDR", env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        env.setdefault("MASTER_PORT", "29500")
        return Launch(rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]),
                      local_rank=int(env["LOCAL_RANK"]), node_rank=int(env.get("SLURM_NODEID", "0")),
                      hostname=host, launcher="slurm")
    return Launch(rank=0, world_size=1, local_rank=0, node_rank=0, hostname=host, launcher="none")


def gather_profiles(profile: Profile, launch: Launch,
                    timeout_s: float = GATHER_TIMEOUT_S) -> list[tuple[Profile, Launch]] | None:
    """Every rank calls this at the same point; rank 0 gets each rank's (profile, launch) in rank
    order, the others None. A single process (world size 1) gets its own."""
    if launch.world_size <= 1:
        return [(profile, launch)]
    import torch.distributed as dist  # here: only a launched run needs it

    made_default = False
    if not dist.is_initialized():           # the script made no group: one from the launcher's env
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        made_default = True
    group = None
    if dist.get_backend() != "gloo":        # NCCL moves device tensors only: a host group beside it
        group = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
    mine = (profile.to_dict(), launch.__dict__)
    got: list[Any] | None = [None] * launch.world_size if launch.rank == 0 else None
    try:
        dist.gather_object(mine, got, dst=0, group=group)
    finally:
        if group is not None:
            dist.destroy_process_group(group)
        if made_default:
            dist.destroy_process_group()
    if got is None:
        return None
    return [(Profile.from_dict(p), Launch(**lc)) for p, lc in got]


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def merge_profiles(ranked: list[tuple[Profile, Launch]]) -> Profile:
    """Rank 0's profile with a row per rank (step time, data wait, memory, where it ran) and the
    stragglers flagged (``straggler_factor``: the job's step over the median rank's if the
    straggler's extra work is what the others wait for).

    Steps as ``merged_steps``; the first rank's error, named by rank (``analyze --nproc``'s
    ``ccprof.profiler.runner.merge_ranks`` orders causes before consequences from torchrun's
    failure table, which a rank inside the launch does not have)."""
    ranked = sorted(ranked, key=lambda pl: pl[1].rank)
    p0 = next((p for p, lc in ranked if lc.rank == 0), ranked[0][0])
    rows = [{**rank_row(p, lc.rank), "local_rank": lc.local_rank, "node_rank": lc.node_rank,
             "hostname": lc.hostname} for p, lc in ranked]
    flag_stragglers(rows)
    steps = merged_steps(p0, [p for p, _ in ranked])
    error = next((replace(p.error, message=f"rank {lc.rank}: {p.error.message}")
                  for p, lc in ranked if p.error is not None), None)
    return replace(p0, steps=steps, world_size=len(ranked), rank=0, ranks=rows, error=error,
                   status="complete" if error is None else "partial")


def rank_row(p: Profile, rank: int) -> dict[str, Any]:
    """One rank's row of ``Profile.ranks``: its step time (median and mean), phases, memory, status."""
    ph = p.steps.phase_s or {}
    return {"rank": rank, "step_s": _median(list(p.steps.step_s)),
            "step_s_mean": (sum(p.steps.step_s) / len(p.steps.step_s)) if p.steps.step_s else None,
            "data_s": ph.get("data"), "forward_s": ph.get("forward"), "backward_s": ph.get("backward"),
            "own_s": own_work_s(ph), "peak_bytes": p.memory.peak_bytes, "flops_per_step": p.flops.per_step,
            "samples_per_step": p.steps.samples_per_step, "status": p.status,
            "error": p.error.message if p.error else None}


def merged_steps(p0: Profile, profiles: list[Profile]) -> Steps:
    """Rank 0's steps with the job's step times (per step, the slowest rank's: a data-parallel
    step is as slow as its slowest rank) and the global batch (samples and tokens add up)."""
    n = min(len(p.steps.step_s) for p in profiles)
    step_s = [max(p.steps.step_s[i] for p in profiles) for i in range(n)]
    samples = [p.steps.samples_per_step for p in profiles]
    tokens = [p.steps.tokens_per_step for p in profiles]
    return replace(p0.steps, step_s=step_s, measured=n,
                   samples_per_step=sum(samples) if all(samples) else p0.steps.samples_per_step,
                   tokens_per_step=sum(tokens) if all(tokens) else p0.steps.tokens_per_step)


def own_work_s(phase_s: dict[str, float]) -> float | None:
    """A rank's mean time per step outside backward (data, forward, optimizer, other): under DDP
    the work the other ranks wait for inside their backward. None without phase times."""
    rest = [phase_s[k] for k in STEP_PHASES if k != "backward" and k in (phase_s or {})]
    return sum(rest) if rest else None


def flag_stragglers(rows: list[dict[str, Any]]) -> None:
    """Set ``straggler_factor`` on each per-rank row (1.0 when none) and ``straggler`` where it
    exceeds 1 + STRAGGLER_EXCESS_FRAC and the excess is over STRAGGLER_MIN_EXCESS_S. Rows: dicts
    with ``step_s`` (median step) and ``own_s`` (``own_work_s``), either None when unknown."""
    med_step = _median([r["step_s"] for r in rows if r.get("step_s") is not None])
    med_own = _median([r["own_s"] for r in rows if r.get("own_s") is not None])
    for r in rows:
        r["straggler_factor"], r["straggler"] = 1.0, False
        if r.get("step_s") is None or not med_step:
            continue
        excess_s = r["step_s"] - med_step
        if r.get("own_s") is not None and med_own is not None:
            excess_s = max(excess_s, r["own_s"] - med_own)
        factor = 1.0 + max(excess_s, 0.0) / med_step
        r["straggler_factor"] = round(factor, 3)
        r["straggler"] = factor > 1.0 + STRAGGLER_EXCESS_FRAC and excess_s > STRAGGLER_MIN_EXCESS_S
