"""The report's view models: plain frozen dataclasses, what the templates, the plotly figures
and the terminal read (built by ``view.build_report_view`` and ``compare.build_compare_view``)."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Card", "ConfigLine", "ConfigsView", "DryRunView", "Header", "Glance", "MeasuredRow", "Recommendation", "OtherAdvice", "PlanView",
    "ChartSpec", "MemoryPart", "MemoryChart", "ProjectedPhase", "Projected", "Phase", "FlopsNode", "GpuCostRow",
    "WaterfallStep", "GpuTimeline", "LossSeries", "ModuleRow", "ReportView", "CompareRow", "RunLabel", "CompareView",
]


# --------------------------------------------------------------------------- dataclasses
@dataclass(frozen=True)
class Card:
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class ConfigLine:
    """One configuration of the plan, formatted (``ccprof.reports._view_configs``)."""
    name: str                               # "4 x h100-sxm FSDP + checkpointing"
    gpu: str
    gpus: int
    parallel: str
    tweak: str
    fits: bool
    memory: str
    memory_bytes: int
    step: str
    step_s: float
    tokens: str
    tokens_per_s: float | None
    hours: str
    run_hours: float | None
    usd: str
    usd_value: float | None
    price: str
    how: str


@dataclass(frozen=True)
class ConfigsView:
    picks: list[str]
    lines: list[ConfigLine]                 # the configurations that fit, cheapest first
    note: str
    assumptions: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    per_1k: bool = False                    # no run size: dollars per 1,000 samples


@dataclass(frozen=True)
class DryRunView:
    """What a --dry-run report says first: nothing measured, the stand-ins, the fit per GPU."""
    headline: str
    assumptions: list[str] = field(default_factory=list)
    stand_ins: list[str] = field(default_factory=list)     # "train.py:42 (main): what: value (N times)"
    fits: list[str] = field(default_factory=list)          # "h100-sxm (80 GiB): fits, 12 GiB to spare ..."
    fits_note: str = ""
    world: str = ""         # "rank 0 of 16 (2 nodes x 8 GPUs): collectives 1.2 ms a step on h100-sxm, 0.3 ms not hidden"


@dataclass(frozen=True)
class Header:
    title: str
    script: str
    argv: str
    device: str
    target_gpu: str
    price: str
    planned_run: str
    versions: str
    ran_at: str
    status: str
    generated_at: str
    planned_run_known: bool = False


@dataclass(frozen=True)
class Glance:
    cards: list[Card]
    note: str = ""                          # e.g. "no price attached: ..."


@dataclass(frozen=True)
class MeasuredRow:
    what: str
    projected: str
    measured: str


@dataclass(frozen=True)
class Recommendation:
    rank: int
    tweak: str
    anchor: str                             # "tweak-<id>", the report anchor of the tweak id
    title: str
    time: str
    memory: str
    usd: str
    cost_share: str                         # share of the run's GPU cost saved
    expected: str                           # cost_share x confidence weight: the ranking key
    confidence: str
    risk: str
    rationale: str
    assumptions: list[str]
    sources: list[str]
    snippet: str
    auto_apply: bool
    in_plan: bool
    measured: list[MeasuredRow] = field(default_factory=list)
    measured_note: str = ""
    harmful: bool = False
    failed: bool = False                    # --verify: the re-run failed (measured_note has its error)


@dataclass(frozen=True)
class OtherAdvice:
    tweak: str
    anchor: str
    title: str
    status: str
    rationale: str


@dataclass(frozen=True)
class PlanView:
    tweaks: list[str]
    summary: str
    conflicts: list[str]


@dataclass(frozen=True)
class ChartSpec:
    id: str
    title: str
    caption: str
    available: bool
    reason: str = ""                        # why the chart is not drawn


@dataclass(frozen=True)
class MemoryPart:
    label: str
    bytes: int
    text: str


@dataclass(frozen=True)
class MemoryChart:
    parts: list[MemoryPart]
    peak_bytes: int
    capacity_bytes: int | None
    capacity_label: str


@dataclass(frozen=True)
class ProjectedPhase:
    """One phase of the projected step on the target GPU: device vs host, and which sets it."""
    name: str
    device: str
    host: str
    phase: str
    bound: str
    s: float


@dataclass(frozen=True)
class Projected:
    """The projected step on the target GPU, phase by phase (ccprof.hardware.step)."""
    gpu: str
    method: str
    step: str
    phases: list[ProjectedPhase]
    note: str


@dataclass(frozen=True)
class Phase:
    name: str
    s: float
    text: str


@dataclass(frozen=True)
class FlopsNode:
    id: str
    parent: str
    label: str
    flops: int
    text: str


@dataclass(frozen=True)
class GpuCostRow:
    gpu: str
    name: str
    fits: bool
    target: bool
    step_s: float | None
    usd_per_hour: float | None
    usd_run: float | None                   # the planned run's dollars; None when the run size is unknown
    mfu: float | None
    step: str
    price: str
    run: str
    mfu_text: str
    method: str
    note: str
    usd_per_1k_steps: float | None = None


@dataclass(frozen=True)
class WaterfallStep:
    label: str
    usd: float                              # absolute for the first and last, delta between
    measure: str                            # "absolute" | "relative" | "total"
    text: str


@dataclass(frozen=True)
class GpuTimeline:
    t_s: list[float]
    sm_util_pct: list[float | None]
    power_w: list[float | None]
    mem_used_gib: list[float | None]


@dataclass(frozen=True)
class LossSeries:
    step: list[int]
    loss: list[float | None]


@dataclass(frozen=True)
class ModuleRow:
    name: str
    class_: str
    depth: int
    params: int
    trainable_params: int
    flops: int
    activation_bytes: int
    params_text: str
    trainable_text: str
    flops_text: str
    activation_text: str
    op_bytes: int = 0                       # read + written by the module's ops, one step
    op_bytes_text: str = ""
    step_s: float | None = None             # device seconds of its ops on the target GPU
    step_text: str = ""


@dataclass(frozen=True)
class RankRow:
    """One rank of a job profiled on several ranks."""
    rank: int
    node: str                               # "node 1 (host), local rank 0"
    step_text: str
    step_s: float | None
    data_text: str                          # data wait per step
    peak_text: str
    straggler: bool
    straggler_text: str                     # "straggler, 1.85x" or ""
    status: str


@dataclass(frozen=True)
class ReportView:
    header: Header
    glance: Glance
    recommendations: list[Recommendation]
    other_advice: list[OtherAdvice]
    plan: PlanView | None
    charts: list[ChartSpec]
    memory: MemoryChart
    phases: list[Phase]
    projected: Projected | None
    flops_tree: list[FlopsNode]
    gpu_costs: list[GpuCostRow]
    waterfall: list[WaterfallStep]
    timeline: GpuTimeline | None
    loss: LossSeries
    modules: list[ModuleRow]
    modules_note: str
    findings: list[str]
    error: str
    notes: list[str]
    rank_note: str = ""
    evaluation: str = ""                    # work between steps that is not training (profile.eval)
    verification: list[str] = field(default_factory=list)   # what --verify did, failures first
    dry_run: DryRunView | None = None       # a --dry-run's profile (ccprof.reports._view_dry)
    configs: ConfigsView | None = None      # the plan across configurations (ccprof.reports._view_configs)
    ranks: list[RankRow] = field(default_factory=list)      # per rank, when several ranks ran
    ranks_note: str = ""


@dataclass(frozen=True)
class CompareRow:
    metric: str
    before: str
    after: str
    change: str
    better: bool | None                     # None: no significant change, or not comparable
    before_value: float | None = None
    after_value: float | None = None
    band: str = ""                          # "±1.2%": what the two runs' own spread allows
    significant: bool = False               # the change is beyond that band (and ccprof's 1%)


@dataclass(frozen=True)
class RunLabel:
    """Which run a side of a comparison is: when it finished, what ran, where it was priced."""
    side: str                               # "before" | "after"
    finished_at: str
    script: str
    args: str
    gpu: str
    price: str
    ccprof: str
    host: str


@dataclass(frozen=True)
class CompareView:
    title: str
    before_label: str
    after_label: str
    rows: list[CompareRow]
    notes: list[str]
    generated_at: str
    runs: list[RunLabel] = field(default_factory=list)
    verdict: str = ""                       # "no significant change" or what changed
