"""The report's per-rank table: a job profiled on several ranks (``ccprof run`` under a launcher,
``analyze --nproc``) shows each rank's step time, data wait, memory and where it ran, with the
stragglers flagged (``ccprof.profiler.launched`` decides which)."""
from __future__ import annotations

from typing import Any

from ccprof.artefacts.profile import Profile
from ccprof.reports.view_types import RankRow
from ccprof.units import MISSING, fmt_bytes, fmt_s

STRAGGLER_RULE = (
    "A straggler's own work per step (its step time, or the time outside backward: DDP's other "
    "ranks wait for it inside theirs) exceeds the ranks' median by more than {frac:.0%} of the median "
    "step and by more than {floor_ms:g} ms (less is scheduling noise of a shared host); the factor is the job's step over the median rank's. Assumes the ranks do the same work per "
    "step, as data-parallel ranks do (DDP all-reduces gradients during backward: Li et al., "
    "\"PyTorch Distributed: Experiences on Accelerating Data Parallel Training\", VLDB 2020).")


def rank_rows(profile: Profile) -> list[RankRow]:
    """One row per rank, in rank order; none for a single process."""
    if profile.world_size <= 1 or not profile.ranks:
        return []
    rows = []
    for r in sorted(profile.ranks, key=lambda r: r.get("rank", 0)):
        step_s = r.get("step_s", r.get("step_s_mean"))
        factor = r.get("straggler_factor")
        rows.append(RankRow(
            rank=int(r.get("rank", 0)), node=_where(r), step_text=fmt_s(step_s), step_s=step_s,
            data_text=fmt_s(r.get("data_s")), peak_text=fmt_bytes(r.get("peak_bytes")),
            straggler=bool(r.get("straggler")),
            straggler_text=f"straggler, {factor:.2f}x" if r.get("straggler") and factor else "",
            status=r.get("error") or r.get("status", "")))
    return rows


def ranks_note(profile: Profile) -> str:
    """How stragglers are told apart, with the threshold (empty for a single process)."""
    if profile.world_size <= 1 or not profile.ranks:
        return ""
    from ccprof.profiler.launched import (  # the one threshold, beside its rule
        STRAGGLER_EXCESS_FRAC,
        STRAGGLER_MIN_EXCESS_S,
    )

    return STRAGGLER_RULE.format(frac=STRAGGLER_EXCESS_FRAC, floor_ms=STRAGGLER_MIN_EXCESS_S * 1e3)


def _where(r: dict[str, Any]) -> str:
    host, node = r.get("hostname"), r.get("node_rank")
    if host is None and node is None:
        return MISSING
    return f"node {node if node is not None else MISSING} ({host or MISSING}), local rank {r.get('local_rank', MISSING)}"
