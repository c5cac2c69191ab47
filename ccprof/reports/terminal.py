"""The terminal stage: a compact rich summary of a report, and compare as a table.

Both print to the ``rich.console.Console`` they are given (the CLI owns it, and ``--quiet``
simply does not call them); the numbers come from the same view models as the HTML.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports.compare import build_compare_view
from ccprof.reports.view import build_report_view
from ccprof.units import fmt_bytes, fmt_pct, fmt_s, fmt_usd

__all__ = ["terminal_summary", "compare_table", "advice_table"]

_RISK_STYLE = {"none": "green", "numerics": "yellow", "convergence": "yellow", "accuracy": "red"}


def terminal_summary(profile: Profile, advice_set: AdviceSet | None, console: Console,
                     top: int = 5, catalog: dict[str, Any] | None = None) -> None:
    """Print cost, memory, MFU and the ``top`` recommendations to ``console``.

    Example: ``terminal_summary(profile, advice, Console(), top=3)``.
    """
    v = build_report_view(profile, advice_set, catalog=catalog)
    h = v.header
    head = Text.assemble((h.title, "bold"), "\n",
                         ("device ", "dim"), h.device, ("   target ", "dim"), h.target_gpu,
                         ("   price ", "dim"), h.price.split(" — ")[0], "\n",
                         ("run ", "dim"), h.planned_run)
    cards = Table.grid(padding=(0, 3))
    for _ in v.glance.cards:
        cards.add_column(justify="left")
    cards.add_row(*[Text(c.label, style="dim") for c in v.glance.cards])
    cards.add_row(*[Text(c.value, style="bold") for c in v.glance.cards])
    parts: list = [head, Text(""), cards]
    if v.glance.note:
        parts.append(Text(v.glance.note, style="yellow"))
    if v.evaluation:
        parts.append(Text(v.evaluation, style="dim"))
    if v.error:
        parts.append(Text("The script stopped early: " + v.error, style="red"))
    for f in v.findings[:3]:
        parts.append(Text("• " + f, style="yellow"))
    recs = v.recommendations[:max(0, top)]
    if recs:
        t = Table(title=f"Top {len(recs)} of {len(v.recommendations)} recommendations",
                  title_justify="left", expand=False, show_edge=False, pad_edge=False)
        verified_any = any(r.measured or r.failed for r in recs)
        # the tweak id is what the user types next (ccprof apply -t ID): never cut it
        cols = [("#", {"justify": "right"}), ("tweak", {"no_wrap": True}), ("time", {}), ("memory", {}),
                ("$", {}), ("cost", {}), ("conf.", {}), ("risk", {})] + ([("verified", {})] if verified_any else [])
        for col, kw in cols:
            t.add_column(col, **kw)
        for r in recs:
            # Text, not str: a rich table parses "[...]" in plain strings as markup
            row = [Text(str(r.rank)), Text(r.tweak), Text(r.time), Text(r.memory), Text(r.usd),
                   Text(r.cost_share.split(" ")[0]), Text(r.confidence), Text(r.risk, style=_RISK_STYLE.get(r.risk, ""))]
            if verified_any:
                row.append(Text("failed" if r.failed else (r.measured[0].measured + (" (harmful)" if r.harmful else "")
                                                           if r.measured else "")))
            t.add_row(*row)
        parts += [Text(""), t]
    elif advice_set is not None and advice_set.advice:
        parts += [Text(""), Text("No tweak is recommended for this profile.")]
    if v.plan:
        parts += [Text(""), Text.assemble(("plan ", "bold"), " → ".join(v.plan.tweaks), ": ", v.plan.summary)]
    console.print(Panel(Group(*parts), title="ccprof", title_align="left", expand=False))


def compare_table(before: Profile, after: Profile, console: Console) -> None:
    """Print before/after/change of step time, memory, MFU, throughput and $ to ``console``.

    Example: ``compare_table(Profile.from_json("a.json"), Profile.from_json("b.json"), Console())``.
    """
    v = build_compare_view(before, after)
    for run in v.runs:
        console.print(Text(f"{run.side}: {run.script} {run.args if run.args != '(none)' else ''}".rstrip()
                           + f" — finished {run.finished_at}, {run.gpu} at {run.price}, ccprof {run.ccprof}, "
                           f"profiled on {run.host}"))
    t = Table(title=Text(v.title), title_justify="left")
    t.add_column("metric")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    t.add_column("change", justify="right")
    t.add_column("noise band", justify="right")
    for r in v.rows:
        style = "green" if r.better else ("red" if r.better is False else "")
        t.add_row(Text(r.metric), Text(r.before), Text(r.after), Text(r.change, style=style), Text(r.band))
    console.print(t)
    console.print(Text(v.verdict, style="bold"))
    for n in v.notes:
        console.print(Text("note: " + n, style="yellow"))


def advice_table(advice_set: AdviceSet, console: Console) -> None:
    """Every tweak's status and projected saving, then the plan (``ccprof advise``).

    Example: ``advice_table(AdviceSet.from_json("advice.json"), Console())``.
    """
    t = Table(title=Text(f"ccprof advice ({advice_set.plan.gpu or 'no GPU priced'})"))
    for col in ("tweak", "status", "time", "memory", "dollars", "confidence", "risk"):
        t.add_column(col, no_wrap=col in ("tweak", "status"))     # what the user types next: never cut
    for a in advice_set.advice:
        p = a.projected
        t.add_row(*(Text(x) for x in (a.tweak, a.status, fmt_pct(p.time_saved_frac), fmt_bytes(p.memory_saved_bytes),
                                      fmt_usd(p.usd_saved), a.confidence, a.risk)))
    console.print(t)
    plan = advice_set.plan
    run = (f"run {fmt_usd(plan.usd_run_before)} -> {fmt_usd(plan.usd_run_after)}" if plan.usd_run_before > 0
           else f"step {fmt_s(plan.step_s_before)} -> {fmt_s(plan.step_s_after)} (run size unknown)")
    console.print(Text(f"plan: {' -> '.join(plan.tweaks) or 'nothing to apply'}; {run}"))
