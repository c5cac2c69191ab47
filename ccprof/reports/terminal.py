"""The terminal stage: a compact rich summary of a report, and compare as a table.

Both print to the ``rich.console.Console`` they are given (the CLI owns it, and ``--quiet``
simply does not call them); the numbers come from the same view models as the HTML.
"""
from __future__ import annotations

from typing import Any

from rich import box
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

# the narrow summary's words for each column of the recommendations table
_LIST_LABEL = {"time": "time {}", "memory": "memory {}", "$": "{}", "cost": "{} of the cost",
               "conf.": "confidence {}", "risk": "risk {}", "verified": "verified {}"}
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
    room = console.width - 4
    # the figures side by side when each fits its column whole (a label may wrap), else one per line
    card_widths = [max(len(c.value), *(len(w) for w in c.label.split())) for c in v.glance.cards]
    if sum(card_widths) + 3 * (len(card_widths) - 1) <= room:
        spare = room - sum(card_widths) - 3 * (len(card_widths) - 1)
        cards = Table.grid(padding=(0, 3))
        for c, w in zip(v.glance.cards, card_widths):     # a label on one line when the room allows
            grow = min(spare, max(0, len(c.label) - w))
            spare -= grow
            cards.add_column(justify="left", width=w + grow)
        cards.add_row(*[Text(c.label, style="dim") for c in v.glance.cards])
        cards.add_row(*[Text(c.value, style="bold") for c in v.glance.cards])
    else:
        cards = Group(*[Text.assemble((c.label + " ", "dim"), (c.value, "bold")) for c in v.glance.cards])
    parts: list = [head, Text(""), cards]
    if v.dry_run is not None:
        d = v.dry_run
        said = (f"{len(d.stand_ins)} stand-in(s) for what the script read or did, e.g. {d.stand_ins[0]}"
                if d.stand_ins else "the script read no tensor's value")
        parts.append(Text(f"Dry run on fake tensors: nothing was measured, every time is the cost model's; {said} "
                          "(the report lists them).", style="yellow"))
        if d.world:
            parts.append(Text(d.world))
        target = profile.cost.gpu if profile.cost is not None else ""
        parts += [Text(f) for f in d.fits if target and f.startswith((f"{target} (", f"{target}:"))]
    if v.glance.note:
        parts.append(Text(v.glance.note, style="yellow"))
    if v.evaluation:
        parts.append(Text(v.evaluation, style="dim"))
    if v.ranks:
        slow = [f"rank {r.rank} ({r.node}: {r.straggler_text})" for r in v.ranks if r.straggler]
        parts.append(Text(f"{len(v.ranks)} ranks; " + ("stragglers: " + "; ".join(slow) if slow else "no straggler")
                          + " (the per-rank table is in the report)", style="yellow" if slow else "dim"))
    if v.error:
        parts.append(Text("The script stopped early: " + v.error, style="red"))
    for f in v.findings[:3]:
        parts.append(Text("• " + f, style="yellow"))
    recs = v.recommendations[:max(0, top)]
    if recs:
        verified_any = any(r.measured or r.failed for r in recs)
        # the tweak id is what the user types next (ccprof apply -t ID): never cut it
        cols = [("#", {"justify": "right"}), ("tweak", {"no_wrap": True}), ("time", {}), ("memory", {}),
                ("$", {}), ("cost", {}), ("conf.", {}), ("risk", {})] + ([("verified", {})] if verified_any else [])
        rows = []
        for r in recs:
            # Text, not str: a rich table parses "[...]" in plain strings as markup
            row = [Text(str(r.rank)), Text(r.tweak), Text(r.time), Text(r.memory), Text(r.usd),
                   Text(r.cost_share.split(" ")[0]), Text(r.confidence), Text(r.risk, style=_RISK_STYLE.get(r.risk, ""))]
            if verified_any:
                row.append(Text("failed" if r.failed else (r.measured[0].measured + (" (harmful)" if r.harmful else "")
                                                           if r.measured else "")))
            rows.append(row)
        widths = _widths(cols, rows, console.width - 4)
        if widths is not None:
            parts += [Text(""), _recommendations(len(recs), len(v.recommendations), cols, rows, widths)]
        else:   # too narrow for the columns side by side: one wrapped line per tweak, nothing cut
            parts += [Text(""), Text(f"Top {len(recs)} of {len(v.recommendations)} recommendations", style="italic")]
            for row in rows:
                parts.append(Text.assemble(
                    (f"{row[0].plain}. ", ""), (row[1].plain, "bold"), ": ",
                    "; ".join(_LIST_LABEL.get(col, col + " {}").format(cell.plain)
                              for (col, _), cell in zip(cols[2:], row[2:]) if cell.plain)))
    elif advice_set is not None and advice_set.advice:
        parts += [Text(""), Text("No tweak is recommended for this profile.")]
    if v.plan:
        parts += [Text(""), Text.assemble(("plan ", "bold"), " → ".join(v.plan.tweaks), ": ", v.plan.summary)]
    if v.configs is not None:
        parts += [Text("")] + [Text(p) for p in v.configs.picks]
    console.print(Panel(Group(*parts), title="ccprof", title_align="left", expand=False))


def _recommendations(shown: int, total: int, cols: list, rows: list, widths: list[int]) -> Table:
    t = Table(title=f"Top {shown} of {total} recommendations", title_justify="left", expand=False, show_edge=False,
              pad_edge=False, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    for i, (col, kw) in enumerate(cols):
        t.add_column(col, width=widths[i], **kw)
    for row in rows:
        t.add_row(*row)
    return t


def _widths(cols: list, rows: list, room: int) -> list[int] | None:
    """Column widths of the recommendations table in ``room`` characters: a figure is wrapped between
    words, never cut ("saves $0.000437", "convergence"). Each column gets its longest word, then
    what is left goes to the columns that would wrap, most wrapped first; None (rich folds words)
    when even the longest words do not fit side by side (the summary then lists one line per tweak)."""
    room -= 2 * (len(cols) - 1)                      # the gaps between columns
    texts = [[col] + [row[i].plain for row in rows] for i, (col, _) in enumerate(cols)]
    natural = [max(len(x) for x in t) for t in texts]
    widths = [max((len(w) for x in t for w in x.split()), default=1) for t in texts]
    if sum(natural) <= room:
        return natural
    if sum(widths) > room:
        return None
    spare = room - sum(widths)
    while spare > 0:
        i = max(range(len(widths)), key=lambda k: natural[k] - widths[k])
        if natural[i] <= widths[i]:
            break
        widths[i] += 1
        spare -= 1
    return widths


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
    from ccprof.reports._view_configs import configs_view  # here: the view module loads only on this path
    configs = configs_view(advice_set)
    for pick in (configs.picks if configs is not None else []):
        console.print(Text(pick))
