"""The step clock's record and the Profile's ``steps`` section built from it, purely.

The Session records each measured step as it ends (its time, its phases, its loss, what fed
it); ``steps_section`` turns that record into ``Steps`` with no live object, no torch and no
Session: the assembly can be tested on a hand-made record, and a saved record would give the
same section.

Example::

    rec = StepRecord(warmup=3, step_s=[0.12, 0.11], phase_totals=[{"forward": 0.05, ...}, ...])
    steps_section(rec).phase_s["forward"]
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from ccprof.artefacts.profile import Steps
from ccprof.artefacts.vocab import STEP_PHASES  # a step's wall time, split

__all__ = ["StepRecord", "steps_section", "clean_steps", "micro_batches_per_step", "STEP_PHASES"]



@dataclass(frozen=True)
class StepRecord:
    warmup: int = 0
    step_s: list[float] = field(default_factory=list)                 # each measured step's wall time
    phase_totals: list[dict[str, float]] = field(default_factory=list)  # per step: phase -> seconds
    losses: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)                   # per step, when known
    tokens: list[int] = field(default_factory=list)
    backwards: list[int] = field(default_factory=list)                 # backward calls per step (closures' aside)
    closure_backwards: list[int] = field(default_factory=list)         # per step: inside optimizer.step(closure)
    batches: list[int] = field(default_factory=list)                   # DataLoader batches per step
    fed_by_loader: bool = False                                        # a DataLoader fed the steps
    loader_workers: int = 0
    after_checkpoint: frozenset[int] = frozenset()                     # step indices right after one
    kind: str = "optimizer"
    step_cpu_s: list[float] = field(default_factory=list)             # each step's main-thread CPU time
    phase_cpu_totals: list[dict[str, float]] = field(default_factory=list)  # per step: phase -> CPU s


def clean_steps(rec: StepRecord) -> tuple[list[float], list[dict[str, float]]]:
    """(step_s, phase_totals) without the steps right after a checkpoint when DataLoader
    workers ran (they prefetched during it), as long as two steps remain."""
    skip = rec.after_checkpoint if rec.loader_workers else frozenset()
    keep = [i for i in range(len(rec.step_s)) if i not in skip]
    if len(keep) < 2 or len(keep) == len(rec.step_s):
        return list(rec.step_s), list(rec.phase_totals)
    return [rec.step_s[i] for i in keep], [rec.phase_totals[i] for i in keep]


def micro_batches_per_step(rec: StepRecord) -> int:
    """Micro-batches per optimizer step: the batches a DataLoader fed each step when one did
    (a GAN's several backwards on one batch are not accumulation), else backwards per step."""
    if not rec.backwards:
        return 1
    backwards = round(sum(rec.backwards) / len(rec.backwards))
    if rec.fed_by_loader and rec.batches and min(rec.batches) >= 1:
        batches = round(sum(rec.batches) / len(rec.batches))
        return max(1, min(backwards, batches))
    return max(1, backwards)


def _mean(xs: list[int]) -> float | None:
    return (sum(xs) / len(xs)) if xs else None


def steps_section(rec: StepRecord) -> Steps:
    """The Profile's ``steps``: every measured step's time, the mean phase split (over the
    clean steps), the finite losses, micro-batches, samples and tokens per step; the same step
    and its phases in thread CPU time (medians), when recorded."""
    clean_s, clean_phases = clean_steps(rec)
    phase_s = {ph: sum(d.get(ph, 0.0) for d in clean_phases) / len(clean_s) for ph in STEP_PHASES} if clean_s else {}
    samples, tokens = _mean(rec.samples), _mean(rec.tokens)
    phase_cpu = ({ph: statistics.median(d.get(ph, 0.0) for d in rec.phase_cpu_totals) for ph in STEP_PHASES}
                 if rec.phase_cpu_totals else {})
    return Steps(
        warmup=rec.warmup, measured=len(rec.step_s), step_s=list(rec.step_s), phase_s=phase_s,
        loss=[x for x in rec.losses if math.isfinite(x)],
        micro_batches=micro_batches_per_step(rec),
        closure_backwards=round(sum(rec.closure_backwards) / len(rec.closure_backwards)) if rec.closure_backwards else 0,
        samples_per_step=round(samples) if samples else None,
        tokens_per_step=round(tokens) if tokens else None,
        kind=rec.kind or "optimizer",
        phase_cpu_s=phase_cpu, step_cpu_s=list(rec.step_cpu_s),
    )
