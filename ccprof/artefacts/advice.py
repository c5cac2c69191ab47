"""The Advice artefact: what one tweak would save on one profile, and why.

Every advisor returns one Advice for every profile. ``projected`` holds the model's
numbers; ``measured`` is filled by ``--verify`` (applier.runtime) from a real re-run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ccprof import _serde
from ccprof._serde import ArtefactError
from ccprof.artefacts.tweaks import TWEAKS, TweakOptions, options_for
from ccprof.artefacts.vocab import normalize_dtype

SCHEMA = "ccprof.advice/1"

# "no_saving": the tweak applies, but its projected saving is within the projection's band or
# under ccprof's threshold (advisors.constants.MIN_SAVING_FRAC); details["no_saving"] has the figures
STATUSES = ("recommended", "no_saving", "already_applied", "not_applicable")
RISKS = ("none", "numerics", "convergence", "accuracy")
CONFIDENCES = ("low", "medium", "high")

__all__ = ["SCHEMA", "STATUSES", "RISKS", "CONFIDENCES", "Projected", "Measured", "Verification", "Advice",
           "PlanStep", "Plan", "ConfigRow", "Configurations", "AdviceSet", "ArtefactError"]


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
    time_band_frac: float | None = None     # the two runs' own spread around time_saved_frac
    clock: str = ""                         # "cpu": the main thread's CPU time (a CPU run); "wall"


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
    # what the advisor projected, as the tweak's typed options (ccprof.artefacts.tweaks) in
    # JSON form: --verify and `ccprof apply --from` apply exactly these
    options: dict[str, Any] = field(default_factory=dict)

    def tweak_options(self) -> TweakOptions:
        """``options`` typed: ``GradAccumulationOptions(steps=4)``."""
        return options_for(self.tweak, self.options)


@dataclass(frozen=True)
class PlanStep:
    tweak: str
    step_s: float
    peak_bytes: int
    usd_run: float
    note: str = ""


@dataclass(frozen=True)
class ConfigRow:
    """One configuration of the plan across configurations (ccprof.advisors.configurations)."""
    gpu: str                                # catalog id
    gpus: int = 1                           # all of them, on ``nodes`` nodes
    parallel: str = "none"                  # "none" | "ddp" | "fsdp" | "pipeline" (a traced pipeline's world)
    tweak: str = "as written"               # or the memory tweak applied: mixed_precision, checkpointing, lora
    memory_per_gpu_bytes: int = 0           # what one GPU needs under the fit's rule (the sum of memory_parts)
    usable_bytes: int = 0                   # what it may fill: its memory less the headroom (tensors' rule) or all of it
    fits: bool = True
    step_s: float = 0.0                     # one step on each GPU, collectives not hidden included
    tokens_per_s_per_gpu: float | None = None
    samples_per_s: float | None = None      # all GPUs together
    run_hours: float | None = None          # the planned run's samples; None without a run size
    usd_run: float | None = None
    usd_per_hour: float = 0.0               # all its GPUs
    usd_per_1k_samples: float | None = None
    how: str = ""                           # the collectives it adds
    risk: str = "none"                      # the memory tweak's risk (its advice's); "none" as written
    nodes: int = 1                          # gpus / nodes on each node
    # the parts of memory_per_gpu_bytes (ccprof.hardware.projection.MemoryFit.parts): "tensors", or
    # "reserved" + "nccl" + "cuda_context" for a dry run; empty in older plans
    memory_parts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Configurations:
    """Every configuration's figures and the picks (indices into ``rows``; None when none qualifies)."""
    rows: list[ConfigRow] = field(default_factory=list)
    run_steps: int = 0                      # the planned run on one GPU with the script's batch
    cheapest: int | None = None             # the cheapest that fits
    fastest_in_budget: int | None = None    # the shortest run within budget_usd
    cheapest_by_deadline: int | None = None  # the cheapest run within deadline_h
    budget_usd: float | None = None
    deadline_h: float | None = None
    assumptions: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


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


# Advice files written before Advice.options existed carried the projected figures in
# ``details`` only: read there, once, at load (the catalog's ``legacy_details``: details key ->
# option field).


def _options_from_details(tweak: str, details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in (TWEAKS[tweak].legacy_details if tweak in TWEAKS else ()):
        value: Any = details
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value in (None, "", [], 0):
            continue
        if name == "targets" and isinstance(value, list):   # peft matches suffixes: q_proj, c_attn
            value = sorted({str(t).split(".")[-1] for t in value})
        if name == "dtype":
            try:
                value = normalize_dtype(value)
            except ValueError:
                continue
        out[name] = value
    return out


@dataclass(frozen=True)
class AdviceSet:
    schema: str = SCHEMA
    advice: list[Advice] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)
    verification: Verification | None = None
    configurations: Configurations | None = None    # the plan across GPUs, counts and memory tweaks

    def to_dict(self) -> dict[str, Any]:
        return _serde.to_dict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        return _serde.dump_json(self, path)

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "AdviceSet":
        """Load advice from a path or from JSON text; ArtefactError (a ValueError naming the
        field) when it is not a valid ``ccprof.advice/1``."""
        loaded = _serde.load_json(cls, path_or_text, "ccprof.advice/", "advice file")
        advice = []
        for i, a in enumerate(loaded.advice):
            if not a.options and a.status == "recommended":
                a = replace(a, options=_options_from_details(a.tweak, a.details))
            options_for(a.tweak, a.options, f"advice[{i}].options")      # ArtefactError naming the field
            advice.append(a)
        return replace(loaded, advice=advice)

    def by_tweak(self) -> dict[str, Advice]:
        return {a.tweak: a for a in self.advice}
