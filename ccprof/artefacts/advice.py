"""The Advice artefact: what one tweak would save on one profile, and why.

Every advisor returns one Advice for every profile. ``projected`` holds the model's
numbers; ``measured`` is filled by ``--verify`` (applier.runtime) from a real re-run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccprof import _serde
from ccprof._serde import ArtefactError

SCHEMA = "ccprof.advice/1"

STATUSES = ("recommended", "already_applied", "not_applicable")
RISKS = ("none", "numerics", "convergence", "accuracy")
CONFIDENCES = ("low", "medium", "high")

__all__ = ["SCHEMA", "STATUSES", "RISKS", "CONFIDENCES", "Projected", "Measured", "Verification", "Advice",
           "PlanStep", "Plan", "AdviceSet", "ArtefactError"]


@dataclass(frozen=True)
class Projected:
    time_saved_frac: float = 0.0            # of step time (or of the planned run, say which in rationale)
    memory_saved_bytes: int = 0             # off peak memory; negative = costs memory
    usd_saved: float = 0.0                  # for the planned run on the target GPU
    step_s_after: float | None = None
    peak_bytes_after: int | None = None
    cost_saved_frac: float = 0.0            # share of the run's GPU cost saved (known without a run size)
    expected_frac: float = 0.0              # cost_saved_frac x confidence weight: what advice ranks by


@dataclass(frozen=True)
class Measured:
    time_saved_frac: float | None = None
    memory_saved_bytes: int | None = None
    usd_saved: float | None = None
    loss_delta: float | None = None         # tweak's last loss - baseline's last loss
    step_s: float | None = None
    peak_bytes: int | None = None
    time_error_frac: float | None = None    # (projected - measured) / |measured| where defined
    memory_error_frac: float | None = None
    harmful: bool = False
    note: str | None = None
    failed: bool = False                    # the re-run did not finish: nothing was measured
    error: str | None = None                # then: the script's own error line ("train.py:42: ...")


@dataclass(frozen=True)
class Verification:
    """What ``--verify`` did: the tweaks it re-ran, those that failed (with the script's error
    line) and the top tweaks it could not measure, with why."""
    requested: str = ""                     # "3" or "plan"
    measured: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_measurable: dict[str, str] = field(default_factory=dict)

    @property
    def all_failed(self) -> bool:
        return bool(self.measured) and len(self.failed) == len(self.measured)


@dataclass(frozen=True)
class Advice:
    tweak: str
    status: str = "not_applicable"
    title: str = ""
    projected: Projected = field(default_factory=Projected)
    confidence: str = "low"
    risk: str = "none"
    rationale: str = ""
    assumptions: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    snippet: str = ""
    auto_apply: bool = False                # ccprof can apply it (runtime and/or codemod)
    measured: Measured | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanStep:
    tweak: str
    step_s: float
    peak_bytes: int
    usd_run: float
    note: str = ""


@dataclass(frozen=True)
class Plan:
    tweaks: list[str] = field(default_factory=list)
    steps: list[PlanStep] = field(default_factory=list)
    usd_run_before: float = 0.0
    usd_run_after: float = 0.0
    step_s_before: float = 0.0
    step_s_after: float = 0.0
    peak_bytes_before: int = 0
    peak_bytes_after: int = 0
    conflicts: list[str] = field(default_factory=list)
    gpu: str = ""
    measured: "Measured | None" = None      # `--verify plan`: the whole plan applied in one run
    cost_frac_after: float = 1.0            # the run's GPU cost after / before (known without a run size)


@dataclass(frozen=True)
class AdviceSet:
    schema: str = SCHEMA
    advice: list[Advice] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)
    verification: Verification | None = None

    def to_dict(self) -> dict[str, Any]:
        return _serde.to_dict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        return _serde.dump_json(self, path)

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "AdviceSet":
        """Load advice from a path or from JSON text; ArtefactError (a ValueError naming the
        field) when it is not a valid ``ccprof.advice/1``."""
        return _serde.load_json(cls, path_or_text, "ccprof.advice/", "advice file")

    def by_tweak(self) -> dict[str, Advice]:
        return {a.tweak: a for a in self.advice}
