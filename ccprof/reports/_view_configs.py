"""The report's plan across configurations (``AdviceSet.configurations``): the picks, one row
per configuration that fits, and what the rows assume."""
from __future__ import annotations

from ccprof.artefacts.advice import AdviceSet, ConfigRow, Configurations
from ccprof.reports.view_types import ConfigLine, ConfigsView
from ccprof.units import fmt_bytes, fmt_s, fmt_usd

__all__ = ["configs_view"]

_PARALLEL = {"none": "", "ddp": " DDP", "fsdp": " FSDP", "pipeline": " pipeline"}


def _name(r: ConfigRow) -> str:
    tweak = "" if r.tweak == "as written" else f" + {r.tweak}"
    gpus = f"{r.nodes} nodes x {r.gpus // r.nodes}" if r.nodes > 1 else f"{r.gpus}"
    return f"{gpus} x {r.gpu}{_PARALLEL.get(r.parallel, ' ' + r.parallel)}{tweak}"


def _line(r: ConfigRow) -> ConfigLine:
    return ConfigLine(
        name=_name(r), gpu=r.gpu, gpus=r.gpus, parallel=r.parallel or "none", tweak=r.tweak, fits=r.fits,
        memory=f"{fmt_bytes(r.memory_per_gpu_bytes)} of {fmt_bytes(r.usable_bytes)}{_parts(r)}",
        memory_bytes=r.memory_per_gpu_bytes, step=fmt_s(r.step_s), step_s=r.step_s,
        tokens=f"{r.tokens_per_s_per_gpu:,.0f}" if r.tokens_per_s_per_gpu else "—",
        tokens_per_s=r.tokens_per_s_per_gpu,
        hours=(fmt_s(r.run_hours * 3600) if r.run_hours is not None else "—"), run_hours=r.run_hours,
        usd=(fmt_usd(r.usd_run) if r.usd_run is not None
             else (fmt_usd(r.usd_per_1k_samples) + " / 1k samples" if r.usd_per_1k_samples is not None else "—")),
        usd_value=r.usd_run if r.usd_run is not None else r.usd_per_1k_samples,
        price=f"{fmt_usd(r.usd_per_hour)}/h", how=r.how)


def _parts(r: ConfigRow) -> str:
    """" (reserved 70 GiB + NCCL 960 MiB + context 512 MiB)" under the reserved rule; "" under the tensors'."""
    p = r.memory_parts
    if "reserved" not in p:
        return ""
    return (f" (reserved {fmt_bytes(p['reserved'])} + NCCL {fmt_bytes(p.get('nccl', 0))} + context "
            f"{fmt_bytes(p.get('cuda_context', 0))})")


def _shown(c: Configurations) -> set[int]:
    """Rows the table lists: every one-node row that fits; of the rows over several nodes, the picks and,
    per GPU and tweak, the fewest nodes that fit where one node does not, or meet the deadline where one
    node does not (more nodes only add collectives: their rows would repeat the same GPU at a higher price)."""
    picked = {i for i in (c.cheapest, c.fastest_in_budget, c.cheapest_by_deadline) if i is not None}
    shown = {i for i, r in enumerate(c.rows) if r.fits and (r.nodes == 1 or i in picked)}

    def meets(r: ConfigRow) -> bool:
        return c.deadline_h is not None and r.run_hours is not None and r.run_hours <= c.deadline_h

    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(c.rows):
        groups.setdefault((r.gpu, r.tweak), []).append(i)
    for rows in groups.values():
        one = [c.rows[i] for i in rows if c.rows[i].nodes == 1 and c.rows[i].fits]
        multi = sorted((i for i in rows if c.rows[i].nodes > 1 and c.rows[i].fits), key=lambda i: c.rows[i].nodes)
        for wanted in ((lambda r: True) if not one else None,
                       meets if c.deadline_h is not None and not any(meets(r) for r in one) else None):
            first = next((i for i in multi if wanted is not None and wanted(c.rows[i])), None)
            if first is not None:
                shown.add(first)
    return shown


def configs_view(advice: AdviceSet) -> ConfigsView | None:
    """None when the advice has no plan across configurations."""
    c = advice.configurations
    if c is None or not c.rows:
        return None
    per_1k = not c.run_steps
    picks = []
    if c.cheapest is not None:
        r = c.rows[c.cheapest]
        picks.append(f"Cheapest that fits: {_name(r)}, {_line(r).usd}"
                     + (f" in {fmt_s(r.run_hours * 3600)}" if r.run_hours is not None else "") + ".")
    else:
        most = max(c.rows, key=lambda r: r.gpus)
        over = f"{most.gpus} GPUs on {most.nodes} nodes" if most.nodes > 1 else f"{most.gpus}"
        picks.append(f"No configuration fits: one step's memory is over every GPU's, even sharded over {over}.")
    unknown = "" if c.run_steps else " (the run size is unknown: pass --total-steps or --epochs)"
    limits = (  # (the limit as written, the pick within it, how the pick reads)
        (None if c.budget_usd is None else fmt_usd(c.budget_usd), c.fastest_in_budget,
         lambda limit, r: f"Fastest within {limit}: {_name(r)}, {fmt_s(r.run_hours * 3600)} for {fmt_usd(r.usd_run)}."),
        (None if c.deadline_h is None else fmt_s(c.deadline_h * 3600), c.cheapest_by_deadline,
         lambda limit, r: f"Cheapest within {limit}: {_name(r)}, {fmt_usd(r.usd_run)} in {fmt_s(r.run_hours * 3600)}."))
    for limit, index, says in limits:
        if limit is not None:
            picks.append(says(limit, c.rows[index]) if index is not None
                         else f"Nothing fits within {limit}{unknown}.")
    fitting = [r for r in c.rows if r.fits]
    shown = _shown(c)
    order = sorted((r for i, r in enumerate(c.rows) if i in shown), key=lambda r: (r.usd_run if r.usd_run is not None else (r.usd_per_1k_samples or 0),
                                           r.step_s))
    lines = [_line(r) for r in order]
    out_of = len(c.rows) - len(fitting)
    multi = sum(1 for r in c.rows if r.nodes > 1)
    note = (f"{len(fitting)} of {len(c.rows)} configurations fit"
            + (f"; the {out_of} others need more memory per GPU than it has" if out_of else "") + ". "
            + (f"{multi} span several nodes; the table lists {sum(c.rows[i].nodes > 1 for i in shown)} of them "
               "(the picks, and for each GPU and tweak the fewest nodes that fit where one node does not, or that "
               "meet the deadline where one node does not); advice.json has them all. " if multi else "")
            + ("Dollars and hours are the planned run's "
               f"({c.run_steps:,} steps of the script's batch on one GPU, 1/N of them on N GPUs)."
               if c.run_steps else "The planned run size is unknown: dollars per 1,000 samples."))
    return ConfigsView(picks=picks, lines=lines, note=note, assumptions=list(c.assumptions),
                       sources=list(c.sources), per_1k=per_1k)
