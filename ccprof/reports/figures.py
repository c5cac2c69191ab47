"""Plotly figures, built from the view models only (never from the raw Profile).

``build_figures(view)`` returns ``{chart id: plotly Figure}`` for every chart the view marks
available; ``figures_json(view)`` is the one JSON object the HTML embeds (``<``, ``>`` and
``&`` escaped, so a module name cannot close the script element it sits in). Axes in bytes
use binary units (GiB), never plotly's decimal SI ticks.
"""
from __future__ import annotations

import json
import math

import plotly.graph_objects as go
import plotly.io as pio

from ccprof.reports.view_types import CompareView, ReportView
from ccprof.units import fmt_s

__all__ = ["build_figures", "figures_json", "compare_figure", "safe_json", "PALETTE"]

PALETTE = ("#3b6ea8", "#e08a2e", "#5a9e5a", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c")
_TARGET = "#c44e52"
_FIT = "#3b6ea8"


def safe_json(text: str) -> str:
    """JSON text made safe inside ``<script>``: no ``</script>``, ``<!--`` or line separators."""
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _t(items):
    """User text as plotly shows it: plotly reads a few HTML tags in labels, so escape them."""
    def one(s):
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") if isinstance(s, str) else s
    return [one(s) for s in items] if isinstance(items, list) else one(items)


def _layout(**kw) -> dict:
    base = dict(template="none", height=320, margin=dict(l=60, r=20, t=20, b=50),
                font=dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12),
                paper_bgcolor="white", plot_bgcolor="white", showlegend=False)
    base.update(kw)
    return base


def _byte_unit(max_bytes: float) -> tuple[str, float]:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if max_bytes >= scale:
            return unit, float(scale)
    return "B", 1.0


def _memory(view: ReportView) -> go.Figure:
    m = view.memory
    unit, scale = _byte_unit(max(m.peak_bytes, m.capacity_bytes or 0))
    fig = go.Figure(layout=_layout(
        barmode="stack", height=260, showlegend=True, margin=dict(l=20, r=20, t=30, b=20),
        legend=dict(orientation="h", y=-0.45, x=0), xaxis=dict(ticksuffix=" " + unit, rangemode="tozero"),
        yaxis=dict(showticklabels=False)))
    for i, part in enumerate(m.parts):
        fig.add_trace(go.Bar(x=[part.bytes / scale], y=["peak"], name=part.label, orientation="h",
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertext=_t([f"{part.label}: {part.text}"]), hoverinfo="text"))
    if m.capacity_bytes:
        cap = m.capacity_bytes / scale
        fig.add_shape(type="line", x0=cap, x1=cap, y0=-0.5, y1=0.5, line=dict(color=_TARGET, width=3, dash="dash"))
        fig.add_annotation(x=cap, y=0.5, text=_t(m.capacity_label), showarrow=False, yanchor="bottom",
                           xanchor="right", font=dict(color=_TARGET))
    return fig


def _phases(view: ReportView) -> go.Figure:
    total = sum(p.s for p in view.phases)
    unit, scale = ("ms", 1e3) if total < 2 else ("s", 1.0)
    return go.Figure(
        go.Bar(x=_t([p.name for p in view.phases]), y=[p.s * scale for p in view.phases],
               text=[p.text for p in view.phases], textposition="auto",
               marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(view.phases))],
               hovertext=_t([f"{p.name}: {p.text} ({p.s / total:.0%} of {fmt_s(total)})" if total else p.name
                             for p in view.phases]), hoverinfo="text"),
        layout=_layout(yaxis=dict(title=unit, rangemode="tozero")))


def _flops(view: ReportView) -> go.Figure:
    t = view.flops_tree
    return go.Figure(
        go.Treemap(ids=_t([n.id for n in t]), parents=_t([n.parent for n in t]), labels=_t([n.label for n in t]),
                   values=[n.flops for n in t], branchvalues="total", hovertext=_t([n.text for n in t]),
                   hoverinfo="text", maxdepth=3, marker=dict(colorscale="Blues")),
        layout=_layout(height=420, margin=dict(l=5, r=5, t=5, b=5)))


def _gpu_costs(view: ReportView) -> go.Figure:
    rows = [r for r in view.gpu_costs if r.fits and r.usd_per_1k_steps is not None]
    per_run = all(r.usd_run is not None for r in rows)
    return go.Figure(
        go.Bar(x=_t([r.name for r in rows]), y=[r.usd_run if per_run else r.usd_per_1k_steps for r in rows],
               text=[r.run for r in rows],
               textposition="auto",
               marker_color=[_TARGET if r.target else _FIT for r in rows],
               hovertext=_t([f"{r.name}{' (target)' if r.target else ''}: {r.run} · {r.step}/step · {r.price}"
                             for r in rows]), hoverinfo="text"),
        layout=_layout(yaxis=dict(title="USD, planned run" if per_run else "USD per 1,000 steps",
                                  rangemode="tozero", tickprefix="$")))


def _waterfall(view: ReportView) -> go.Figure:
    w = view.waterfall
    return go.Figure(
        go.Waterfall(x=_t([s.label for s in w]), y=[s.usd for s in w], measure=[s.measure for s in w],
                     text=[s.text for s in w], textposition="outside", hoverinfo="x+text",
                     decreasing=dict(marker=dict(color=PALETTE[2])),
                     increasing=dict(marker=dict(color=PALETTE[3])),
                     totals=dict(marker=dict(color=PALETTE[0]))),
        layout=_layout(height=360, margin=dict(l=60, r=20, t=30, b=110), xaxis=dict(tickangle=-30, automargin=True),
                       yaxis=dict(title="USD, planned run", rangemode="tozero", tickprefix="$")))


def _timeline(view: ReportView) -> go.Figure:
    tl = view.timeline
    assert tl is not None
    fig = go.Figure(layout=_layout(
        showlegend=True, legend=dict(orientation="h", y=-0.25), xaxis=dict(title="s"),
        yaxis=dict(title="SM utilization %", range=[0, 100]),
        yaxis2=dict(title="power W", overlaying="y", side="right", rangemode="tozero"),
        margin=dict(l=60, r=60, t=20, b=60)))
    fig.add_trace(go.Scatter(x=tl.t_s, y=tl.sm_util_pct, name="SM utilization %", mode="lines",
                             line=dict(color=PALETTE[0])))
    fig.add_trace(go.Scatter(x=tl.t_s, y=tl.power_w, name="power W", mode="lines", yaxis="y2",
                             line=dict(color=PALETTE[1])))
    return fig


def _loss(view: ReportView) -> go.Figure:
    return go.Figure(
        go.Scatter(x=view.loss.step, y=view.loss.loss, mode="lines+markers", line=dict(color=PALETTE[0])),
        layout=_layout(xaxis=dict(title="step", dtick=1 if len(view.loss.step) <= 20 else None),
                       yaxis=dict(title="loss")))


def _configs(view: ReportView) -> go.Figure:
    lines = [c for c in (view.configs.lines if view.configs else []) if c.run_hours is not None]
    fig = go.Figure(layout=_layout(showlegend=True, legend=dict(orientation="h", y=-0.25),
                                   xaxis=dict(title="hours, planned run", type="log"),
                                   yaxis=dict(title="USD, planned run", rangemode="tozero", tickprefix="$"),
                                   margin=dict(l=60, r=20, t=20, b=70)))
    for i, gpu in enumerate(sorted({c.gpu for c in lines})):
        mine = [c for c in lines if c.gpu == gpu]
        fig.add_trace(go.Scatter(
            x=[c.run_hours for c in mine], y=[c.usd_value for c in mine], mode="markers", name=_t([gpu])[0],
            # the marker grows with the GPU count's doublings (1 GPU: 6 px, 128 GPUs: 34 px)
            marker=dict(size=[6 + 4 * math.log2(max(c.gpus, 1)) for c in mine], color=PALETTE[i % len(PALETTE)],
                        symbol=["circle" if c.tweak == "as written" else "diamond" for c in mine]),
            hovertext=_t([f"{c.name}: {c.usd} in {c.hours}, {c.memory} per GPU, {c.step}/step" for c in mine]),
            hoverinfo="text"))
    return fig


_BUILDERS = {"configs": _configs, "memory": _memory, "phases": _phases, "flops": _flops, "gpu_costs": _gpu_costs,
             "waterfall": _waterfall, "gpu_timeline": _timeline, "loss": _loss}


def build_figures(view: ReportView) -> dict[str, go.Figure]:
    """One plotly Figure per available chart of ``view``, keyed by ``ChartSpec.id``."""
    return {c.id: _BUILDERS[c.id](view) for c in view.charts if c.available and c.id in _BUILDERS}


def _to_json(figs: dict[str, go.Figure]) -> str:
    parts = [f"{json.dumps(k)}:{pio.to_json(f, validate=False, remove_uids=True)}" for k, f in figs.items()]
    return safe_json("{" + ",".join(parts) + "}")


def figures_json(view: ReportView) -> str:
    """The figures of ``view`` as one JSON object, safe to place inside a ``<script>``."""
    return _to_json(build_figures(view))


def compare_figure(view: CompareView) -> str:
    """A bar chart of after ÷ before per metric (100% = unchanged), as safe JSON."""
    rows = [r for r in view.rows if r.before_value and r.after_value is not None and r.metric != "MFU"]
    ratio = [r.after_value / r.before_value * 100 for r in rows]
    colors = [PALETTE[2] if r.better else (PALETTE[3] if r.better is False else PALETTE[7]) for r in rows]
    fig = go.Figure(
        go.Bar(x=_t([r.metric for r in rows]), y=ratio, marker_color=colors,
               text=[r.change for r in rows], textposition="auto",
               hovertext=_t([f"{r.metric}: {r.before} → {r.after} ({r.change})" for r in rows]),
               hoverinfo="text"),
        layout=_layout(yaxis=dict(title="after, % of before", rangemode="tozero")))
    fig.add_hline(y=100, line=dict(color="#444", dash="dot"))
    return _to_json({"compare": fig})

