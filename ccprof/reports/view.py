"""View models: what a report shows, as plain dataclasses built by pure functions.

The templates (``templates/*.html.j2``), the plotly figures (``figures.py``) and the terminal
summary (``terminal.py``) read these and nothing else, so every number is formatted once,
here, and the gold-file tests pin the whole content of a report without a browser
(the coverage.py ``html.py`` pattern: templates hold no logic). The dataclasses are in
``view_types.py``; the compare view is built in ``compare.py``. The sections are built beside
this module: the run's cost (``_view_cost.py``), the advice (``_view_advice.py``), the charts
and tables of the measured run (``_view_charts.py``), with shared helpers in ``_view_common.py``.

    view = build_report_view(profile, advice_set)
    view.glance.cards[0].value        # "$0.0011" per step
"""
from __future__ import annotations

from typing import Any

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports._view_advice import _plan, _recommendations, _waterfall, rank_note, verification_lines
from ccprof.reports._view_charts import _charts, _flops_tree, _loss, _memory, _modules, _phases, _timeline

# the sections, built beside this module; every name the report stages import from here stays here
from ccprof.reports._view_common import (  # noqa: F401  (re-exported: compare.py and the tests import them)
    MAX_MODULE_ROWS,
    MAX_TIMELINE_POINTS,
    MEMORY_PARTS,
    NO_PRICE,
    PHASE_ORDER,
    _finite,
    _mean,
    _no_price,
    _now_iso,
    _rel,
    _target_mfu,
    run_known,
)
from ccprof.reports._view_configs import configs_view
from ccprof.reports._view_cost import _glance, _header, _projected, evaluation_line, gpu_cost_rows
from ccprof.reports._view_dry import dry_run_view
from ccprof.reports._view_ranks import rank_rows, ranks_note
from ccprof.reports.view_types import (  # noqa: F401  (re-exported: the view models)
    Card,
    ChartSpec,
    CompareRow,
    CompareView,
    FlopsNode,
    Glance,
    GpuCostRow,
    GpuTimeline,
    Header,
    LossSeries,
    MeasuredRow,
    MemoryChart,
    MemoryPart,
    ModuleRow,
    OtherAdvice,
    Phase,
    PlanView,
    Projected,
    ProjectedPhase,
    Recommendation,
    ReportView,
    WaterfallStep,
)

__all__ = [
    "Card", "Header", "Glance", "MeasuredRow", "Recommendation", "OtherAdvice", "PlanView",
    "ChartSpec", "MemoryPart", "MemoryChart", "Phase", "FlopsNode", "GpuCostRow",
    "WaterfallStep", "GpuTimeline", "LossSeries", "ModuleRow", "ReportView", "CompareRow",
    "CompareView", "build_report_view", "gpu_cost_rows",
    "MAX_MODULE_ROWS", "MAX_TIMELINE_POINTS", "NO_PRICE",
]


# --------------------------------------------------------------------------- entry points
def build_report_view(profile: Profile, advice_set: AdviceSet | None = None,
                      generated_at: str | None = None,
                      catalog: dict[str, Any] | None = None) -> ReportView:
    """Everything the HTML report and the terminal summary show, formatted.

    Inputs: a ``Profile`` and (optionally) its ``AdviceSet``; ``generated_at`` overrides the
    clock (tests), ``catalog`` the hardware catalog (by GPU id), read only for a profile
    costed before its right-size table was kept in it, and for the target's memory when the
    profile has none; the caller loads it (``ccprof.api.gpu_catalog``). A pure function of its
    inputs: nothing is read from disk here. Output: a ``ReportView``.
    Example: ``build_report_view(Profile.from_json("ccprof-report/profile.json"), catalog=load_catalog())``.
    """
    advice = advice_set or AdviceSet()
    catalog = catalog or {}
    recs, others = _recommendations(profile, advice)
    memory = _memory(profile, catalog)
    phases = _phases(profile)
    tree = _flops_tree(profile)
    gpu_costs = gpu_cost_rows(profile, catalog)
    waterfall = _waterfall(profile, advice)
    timeline = _timeline(profile)
    loss = _loss(profile)
    modules, modules_note = _modules(profile)
    notes = []
    if profile.cost is None:
        notes.append(_no_price(profile))
    for section, why in sorted(profile.reasons.items()):
        if section not in ("cost",):
            notes.append(f"{section}: {why}")
    if not advice.advice:
        notes.append("no advice: the advisors did not run on this profile")
    findings = [f.message + (f" ({f.file}:{f.line})" if f.file and f.line else "")
                for f in profile.findings]
    error = ""
    if profile.error is not None:
        e = profile.error
        error = f"{e.kind}: {e.message}" + (f" ({e.file}:{e.line})" if e.file and e.line else "")
    return ReportView(
        header=_header(profile, generated_at or _now_iso()), glance=_glance(profile, advice),
        recommendations=recs, other_advice=others, plan=_plan(profile, advice),
        charts=_charts(profile, memory, phases, tree, gpu_costs, waterfall, timeline, loss, advice),
        memory=memory, phases=phases, projected=_projected(profile), flops_tree=tree, gpu_costs=gpu_costs,
        waterfall=waterfall,
        timeline=timeline, loss=loss, modules=modules, modules_note=modules_note,
        findings=findings, error=error, notes=notes, rank_note=rank_note(),
        evaluation=evaluation_line(profile), verification=verification_lines(advice),
        ranks=rank_rows(profile), ranks_note=ranks_note(profile), dry_run=dry_run_view(profile, catalog),
        configs=configs_view(advice))
