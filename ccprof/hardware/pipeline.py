"""A pipeline's step from its stages' costs: the schedule's bubble.

A pipeline-parallel step (``torch.distributed.pipelining``) runs ``m`` microbatches through ``p``
ranks; each rank holds ``v`` stages (1, or several for the interleaved and looped schedules). The
cost model costs each rank's own op rows (every microbatch's forward and backward on it, its
sends and receives, its optimizer step); the schedule then sets the step:

- GPipe and 1F1B: the slowest rank's microbatch time ``t`` (its forward and backward work over
  ``m``) paces the pipeline, which fills and drains in ``p - 1`` microbatch slots, so the work
  phases take ``(m + p - 1) t``: a bubble of ``(p - 1) / (m + p - 1)`` of them (Narayanan et al.,
  SC'21, "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM",
  section 2.2.1);
- interleaved 1F1B with ``v`` stages per rank (and the looped breadth-first schedule, taken the
  same): the fill and drain shrink by ``v``, ``(m + (p - 1) / v) t`` (same paper, section 2.2.2);
- zero-bubble schedules split the backward into input and weight gradients and fill the bubble
  with the latter (Qi et al., ICLR 2024, "Zero Bubble Pipeline Parallelism"): ZB-H1 leaves a third
  of 1F1B's bubble when forward, input-gradient and weight-gradient passes take the same time
  (section 3.1; torch's ``ScheduleInterleavedZeroBubble`` is taken so, on the interleaved bubble);
  ZB-V (``ScheduleZBVZeroBubble``, and ``ScheduleDualPipeV``, taken the same) leaves none under
  that assumption (section 4) -- a lower bound: the paper measures a small residual bubble.

The optimizer step (and the data wait) follows the flush on every rank at once: the step adds the
slowest rank's. Send and receive rows are costed as each rank's collectives (the link between the
two ranks' GPUs, the network when they sit on different nodes), in the phase of the schedule's action
that made them (activations forward, gradients backward: ``ccprof.profiler.dryrun_pipe`` tags them)
and never hidden behind compute (``ccprof.hardware.step.blocks``: the schedule waits on them).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccprof.artefacts.profile import OpCost, Pipeline
from ccprof.artefacts.vocab import MODEL_PHASES, STEP_PHASES
from ccprof.units import fmt_bytes, fmt_s

__all__ = ["ZERO_BUBBLE_H1_FRAC", "PipelineStep", "bubble_frac", "chunks_per_rank", "pipeline_ranks", "pipeline_step",
           "describe_pipeline"]

# ZB-H1's bubble as a share of 1F1B's when the F, B and W passes take equal time: (p-1)(T_F + T_B - T_W)
# against (p-1)(T_F + T_B + T_W) (Qi et al., ICLR 2024, "Zero Bubble Pipeline Parallelism", section 3.1)
ZERO_BUBBLE_H1_FRAC = 1.0 / 3.0
_ZB_H1 = ("ScheduleInterleavedZeroBubble",)
_ZB_V = ("ScheduleZBVZeroBubble", "ScheduleDualPipeV")
_INTERLEAVED = ("ScheduleInterleaved1F1B", "ScheduleLoopedBFS")
# phases that run after the pipeline's flush, on every rank at once (the data wait and the optimizer step);
# forward, backward (their sends and receives among them) and what runs between them ("other") are pipelined
_AFTER_FLUSH = tuple(ph for ph in STEP_PHASES if ph not in MODEL_PHASES and ph != "other")
SOURCES = ["Narayanan et al., SC'21, \"Efficient Large-Scale Language Model Training on GPU Clusters Using "
           "Megatron-LM\", section 2.2 (pipeline bubble)",
           "Qi et al., ICLR 2024, \"Zero Bubble Pipeline Parallelism\", sections 3-4"]


def pipeline_ranks(pipe: Pipeline) -> int:
    """The distinct ranks holding the pipeline's stages (``p``; 0 without a stage map)."""
    return len(set(pipe.stage_rank))


def chunks_per_rank(pipe: Pipeline) -> int:
    """Stages each rank holds (``v``): the stages over the distinct ranks holding them."""
    return max(1, pipe.num_stages // (pipeline_ranks(pipe) or 1))


def bubble_frac(schedule: str, ranks: int, microbatches: int, chunks: int = 1) -> float:
    """The share of the pipeline's forward-and-backward time that is bubble, for ``schedule`` (a
    torch.distributed.pipelining class name) on ``ranks`` ranks (``p``), ``microbatches`` (``m``) and
    ``chunks`` stages per rank (``v``) (module docstring). Unknown schedules are costed as 1F1B.

    Example: ``bubble_frac("Schedule1F1B", 4, 8)`` = 3 / (8 + 3) = 0.273.
    """
    p, m = max(int(ranks), 1), max(int(microbatches), 1)
    if p <= 1:
        return 0.0
    if schedule in _ZB_V:
        return 0.0
    v = max(int(chunks), 1) if schedule in _INTERLEAVED + _ZB_H1 else 1
    fill = (p - 1) / v                      # fill and drain, in microbatch slots
    if schedule in _ZB_H1:
        fill *= ZERO_BUBBLE_H1_FRAC
    return fill / (m + fill)


@dataclass(frozen=True)
class PipelineStep:
    """The pipeline's step on one GPU: seconds by phase (summing to ``step_s``) and what set them."""
    step_s: float
    phase_s: dict[str, float]
    bubble_frac: float                      # of the forward-and-backward phases
    bubble_s: float
    slowest_rank: int
    rank_work_s: dict[int, float] = field(default_factory=dict)     # each rank's pipelined phases, no bubble
    detail: dict[str, Any] = field(default_factory=dict)


def pipeline_step(pipe: Pipeline, cost: Callable[[list[OpCost], int], Any], base_rank: int | None = None,
                  base_ops: list[OpCost] | None = None) -> PipelineStep:
    """The step of ``pipe`` from each rank's cost: ``cost(ops, rank)`` -> a StepCost (its ``phase_s``)
    of that rank's op rows (``base_ops`` stand for ``base_rank``'s own rows: a what-if edits them).
    The slowest rank's pipelined phases (all but the data wait and the optimizer) are stretched by
    the bubble; the data wait and the optimizer step add the slowest rank's."""
    by_rank: dict[int, dict[str, float]] = {}
    for row in pipe.ranks:
        ops = base_ops if base_ops is not None and row.rank == base_rank else row.ops
        by_rank[row.rank] = dict(cost(list(ops), row.rank).phase_s)
    work = {r: sum(v for ph, v in phases.items() if ph not in _AFTER_FLUSH) for r, phases in by_rank.items()}
    slowest = max(work, key=lambda r: (work[r], -r))
    p = pipeline_ranks(pipe) or len(by_rank)
    v = chunks_per_rank(pipe)
    frac = bubble_frac(pipe.schedule, p, pipe.microbatches, v)
    stretch = 1.0 / (1.0 - frac)
    phase_s = {ph: (s * stretch if ph not in _AFTER_FLUSH else max(by_rank[r].get(ph, 0.0) for r in by_rank))
               for ph, s in by_rank[slowest].items()}
    bubble_s = work[slowest] * (stretch - 1.0)
    step_s = sum(phase_s.values())
    detail = {"schedule": pipe.schedule, "stages": pipe.num_stages, "ranks": p, "chunks_per_rank": v,
              "microbatches": pipe.microbatches, "bubble_frac": frac, "bubble_s": bubble_s,
              "bubble_step_frac": bubble_s / step_s if step_s else 0.0, "slowest_rank": slowest,
              "rank_work_s": {str(r): s for r, s in sorted(work.items())},
              # each rank's own step (its phases, no bubble) and memory: what sets the step and the GPU's fit
              "rank_phase_s": {str(r): dict(phases) for r, phases in sorted(by_rank.items())},
              "rank_peak_bytes": {str(row.rank): row.reserved_peak_bytes or row.peak_bytes for row in pipe.ranks},
              "sources": list(SOURCES), "rule": _rule(pipe.schedule)}
    return PipelineStep(step_s=step_s, phase_s=phase_s, bubble_frac=frac, bubble_s=bubble_s, slowest_rank=slowest,
                        rank_work_s=work, detail=detail)


def _rule(schedule: str) -> str:
    if schedule in _ZB_V:
        return ("zero bubble (ZB-V): no bubble when forward, input-gradient and weight-gradient passes take equal "
                "time (Qi et al., ICLR 2024); a lower bound")
    if schedule in _ZB_H1:
        return ("ZB-H1: a third of the interleaved schedule's bubble, (p - 1) / (3 v), when the forward, input- and "
                "weight-gradient passes take equal time (Qi et al., ICLR 2024)")
    if schedule in _INTERLEAVED:
        return "interleaved: a bubble of (p - 1) / v microbatch slots over m (Narayanan et al., SC'21, section 2.2.2)"
    return ("GPipe/1F1B: a bubble of (p - 1) / (m + p - 1) of the forward and backward time (Narayanan et al., "
            "SC'21, section 2.2.1)" + ("" if schedule in ("ScheduleGPipe", "Schedule1F1B") else
                                       f"; {schedule} is costed so"))


def describe_pipeline(detail: dict[str, Any]) -> str:
    """One line for a projection's ``detail["pipeline"]``: "pipeline of 4 stages x 8 microbatches
    (1F1B): bubble 27% of the step; by rank, pipelined work / optimizer / peak memory: 0 2.80 ms /
    95.0 µs / 100 MiB, ..." (the pipelined work: the forward, backward and sends before the bubble; the
    per-rank figures where the detail has them)."""
    name = str(detail.get("schedule", "")).removeprefix("Schedule") or "pipeline"
    on = f" on {detail['ranks']} ranks" if detail.get("ranks") != detail.get("stages") else ""
    line = (f"pipeline of {detail['stages']} stages{on} x {detail['microbatches']} microbatches ({name}): bubble "
            f"{100 * detail.get('bubble_step_frac', 0.0):.0f}% of the step")
    phases, peaks = detail.get("rank_phase_s") or {}, detail.get("rank_peak_bytes") or {}
    if phases:
        work = detail.get("rank_work_s") or {}
        line += "; by rank, pipelined work / optimizer / peak memory: " + ", ".join(
            f"{r} {fmt_s(work.get(r, 0.0))} / {fmt_s(ph.get('optimizer', 0.0))} / {fmt_bytes(peaks.get(r) or None)}"
            for r, ph in phases.items())
    return line
