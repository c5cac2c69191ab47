"""Report sections about what the run costs: the header, the at-a-glance cards, the target
GPU's projected step, the evaluation between steps, and the right-size table of every GPU.
"""
from __future__ import annotations

from typing import Any

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.hardware import right_size
from ccprof.reports._view_common import (
    NO_PRICE,
    PHASE_ORDER,
    _finite,
    _mean,
    _no_price,
    _rel,
    _target_mfu,
    run_known,
)
from ccprof.reports.view_types import Card, Glance, GpuCostRow, Header, Projected, ProjectedPhase
from ccprof.units import MISSING, fmt_bytes, fmt_delta_usd, fmt_flops, fmt_pct, fmt_s, fmt_signed_pct, fmt_usd


def _header(profile: Profile, generated_at: str) -> Header:
    env, dev, cost = profile.environment, profile.device, profile.cost
    device = dev.name or dev.type
    if dev.type != "cpu" and dev.memory_bytes:
        device += f" ({fmt_bytes(dev.memory_bytes)})"
    if dev.count > 1:
        device += f" × {dev.count}"
    if profile.dry_run is not None:
        device = f"none: a dry run on fake tensors (traced on {device}; nothing measured)"
    if cost is not None:
        target = cost.gpu
        price = f"{fmt_usd(cost.usd_per_hour)}/h"
        if cost.price_date:
            price += f" (as of {cost.price_date})"
        if cost.price_source:
            price += f" — {cost.price_source}"
        if cost.run_steps:
            planned = f"{cost.run_steps:,} steps ({cost.run_steps_source})"
        else:
            planned = "size unknown: " + (cost.run_steps_source.removeprefix("unknown: ") or "no run length read")
    else:
        target = MISSING
        price = NO_PRICE
        planned = MISSING
    versions = f"ccprof {env.ccprof or MISSING} · torch {env.torch or MISSING}"
    if env.transformers:
        versions += f" · transformers {env.transformers}"
    if env.python:
        versions += f" · Python {env.python}"
    script_name = env.script.replace("\\", "/").rsplit("/", 1)[-1] if env.script else "(notebook)"
    return Header(
        title=f"ccprof report — {script_name}",
        script=env.script or "(no script: profiled in-process)",
        argv=" ".join(env.argv) if env.argv else "(no arguments)",
        device=device, target_gpu=target, price=price, planned_run=planned, versions=versions,
        ran_at=env.started_at or MISSING, status=profile.status, generated_at=generated_at,
        planned_run_known=run_known(profile))


def _glance(profile: Profile, advice: AdviceSet) -> Glance:
    cost, steps = profile.cost, profile.steps
    step_s = cost.step_s if cost is not None else _mean(steps.step_s)
    mfu = _target_mfu(profile)
    plan = advice.plan
    measured_s = _mean(steps.step_s) if profile.dry_run is None else None   # a dry run's times are fake ops'
    method = (cost.detail or {}).get("step_s_method", "") if cost is not None else ""
    on_target = profile.device.type == "cuda" and profile.device.catalog_id in (None, cost.gpu) \
        if cost is not None else False
    if cost is not None and method != "measured" and not (not method and on_target):
        # the figure is a projection onto the target GPU: say so, and show what was measured
        here = (f"; measured {fmt_s(measured_s)} on {profile.device.name or profile.device.type}"
                if measured_s is not None else "; nothing measured (dry run)" if profile.dry_run is not None else "")
        cards = [Card(f"step on {cost.gpu}", fmt_s(step_s), f"projected ({method or 'cost_model'}){here}")]
    else:
        cards = [Card("step time", fmt_s(step_s),
                      f"mean of {steps.measured} measured steps" if steps.measured else "")]
    note = ""
    if cost is not None:
        cards.append(Card("cost per step", fmt_usd(cost.usd_per_step), f"on {cost.gpu}"))
        if cost.run_steps:
            cards.append(Card("planned run", fmt_usd(cost.usd_run),
                              f"{cost.run_steps:,} steps, {fmt_s(cost.run_hours * 3600)}"))
        else:
            cards.append(Card("planned run", "size unknown",
                              f"{fmt_usd(cost.usd_per_1k_steps)} per 1,000 steps; pass --total-steps or --epochs"))
    else:
        note = _no_price(profile)
        cards.append(Card("cost per step", NO_PRICE))
        cards.append(Card("planned run", NO_PRICE))
    mfu_note = "model FLOP/s ÷ dense peak"
    if mfu is None:
        mfu_note = profile.reasons.get("mfu", "no peak FLOP/s known for this device")
    cards.append(Card("MFU", fmt_pct(mfu), mfu_note))
    cards.append(Card("peak memory", fmt_bytes(profile.memory.peak_bytes),
                      f"of {fmt_bytes(profile.device.memory_bytes)}" if profile.device.memory_bytes else ""))
    if plan.tweaks and cost is not None and cost.run_steps:
        cards.append(Card("after the plan", fmt_usd(plan.usd_run_after),
                          f"{fmt_delta_usd(plan.usd_run_after - plan.usd_run_before)} "
                          f"({fmt_signed_pct(_rel(plan.usd_run_before, plan.usd_run_after))}) with "
                          + ", ".join(plan.tweaks)))
    elif plan.tweaks:
        cards.append(Card("after the plan", f"{fmt_signed_pct(plan.cost_frac_after - 1)} cost",
                          f"step {fmt_s(plan.step_s_before)} → {fmt_s(plan.step_s_after)} with "
                          + ", ".join(plan.tweaks)))
    else:
        cards.append(Card("after the plan", MISSING, "no recommended plan"))
    return Glance(cards, note)


def _projected(profile: Profile) -> Projected | None:
    """The target GPU's projected step by phase, from what the hardware stage attached."""
    proj = profile.projection or {}
    gid = profile.cost.gpu if profile.cost is not None else profile.device.catalog_id
    p = proj.get(gid) if gid else None
    if p is None or not p.phase_s:
        return None
    d = p.detail or {}
    dev, host, bound = d.get("device_s") or {}, d.get("host_s") or {}, d.get("bound") or {}
    rows = []
    for ph in PHASE_ORDER:
        if ph not in p.phase_s:
            continue
        v = float(p.phase_s[ph])
        if ph == "data":
            rows.append(ProjectedPhase(ph, MISSING, MISSING, fmt_s(v), "data loading", v))
        else:
            rows.append(ProjectedPhase(ph, fmt_s(dev.get(ph)), fmt_s(host.get(ph)), fmt_s(v),
                                       bound.get(ph, MISSING), v))
    data = (d.get("data") or {}).get("method", "")
    note = "; ".join(x for x in (str(d.get("policy") or ""), f"data: {data}" if data else "",
                                 *[str(n) for n in d.get("notes") or []]) if x)
    step = fmt_s(p.step_s)
    if p.step_s_lo is not None and p.step_s_hi is not None and (p.step_s_lo, p.step_s_hi) != (p.step_s, p.step_s):
        step += f" ({fmt_s(p.step_s_lo)} to {fmt_s(p.step_s_hi)} with the measured batch time's band)"
    return Projected(gid, p.method, step, rows, note)


def evaluation_line(profile: Profile) -> str:
    """One sentence on the evaluation the script runs between steps, priced apart; "" if none."""
    ev = profile.eval
    if ev is None:
        return ""
    where = f" ({ev.where})" if ev.where else ""
    what = (f"{ev.forward_calls} forward{'s' if ev.forward_calls != 1 else ''} of the trained model under no_grad"
            + (f", {fmt_flops(ev.flops)}" if ev.flops else ""))
    here = f"{fmt_s(ev.seconds)} here" + (" (while counting FLOPs: an upper bound)" if ev.seconds_counted else "")
    parts = [f"Evaluation between steps{where}: {what} per episode; {here}"]
    cost = profile.cost
    if cost is not None and cost.eval_s:
        parts[0] += f", {fmt_s(cost.eval_s)} on {cost.gpu}"
    every = (f"every {ev.every_steps:,.0f} steps" + (f" (+{ev.extra_episodes})" if ev.extra_episodes else "")
             if ev.every_steps else "interval unknown")
    parts.append(f"{every}, from {ev.every_source}")
    if cost is not None and cost.evals_in_run and cost.usd_run > 0:
        parts.append(f"{cost.evals_in_run:,.0f} episodes in the planned run: {fmt_usd(cost.usd_eval_run)}, "
                     f"{fmt_pct(cost.usd_eval_run / cost.usd_run)} of its cost, outside the training step "
                     "(tweaks' savings apply to the step)")
    return "; ".join(parts) + "."


def gpu_cost_rows(profile: Profile, catalog: dict[str, Any] | None = None) -> list[GpuCostRow]:
    """Right-size table: every projected GPU, cheapest planned run first, non-fitting last.

    The numbers of the GPUs the job fits on are the hardware stage's own
    (``ccprof.hardware.right_size``: the planned run's steps on ``cost.detail["num_gpus"]``
    GPUs, each at its catalog price or a ``--price``); the rest say why they do not fit or
    have no price.
    """
    projection = profile.projection or {}
    if not projection:
        return []
    target = profile.cost.gpu if profile.cost is not None else None
    detail = profile.cost.detail if profile.cost is not None else {}
    num_gpus = int(detail.get("num_gpus") or 1)
    names: dict[str, str] = {}
    if isinstance(detail.get("right_size"), list):
        # priced when the profile was costed (hardware.attach): the report shows what was saved
        priced = {r["gpu"]: r for r in detail["right_size"] if isinstance(r, dict) and "gpu" in r}
        names = dict(detail.get("gpu_names") or {})
    else:       # a profile costed before the table was kept: price it from the catalog given
        catalog = catalog or {}
        priced = {r["gpu"]: r for r in right_size(profile, catalog, projection=projection, num_gpus=num_gpus)}
        names = {g: s.name for g, s in catalog.items()}
    known = run_known(profile)
    rows = []
    for gid, proj in projection.items():
        r = priced.get(gid)
        name = names.get(gid) or str(proj.detail.get("gpu_name") or gid)
        step_s = r["step_s"] if r else (proj.measured_step_s if _finite(proj.measured_step_s) else proj.step_s)
        price = r["usd_per_hour"] if r else None
        usd_run = r["usd_run"] if r else None
        per_1k = r["usd_per_step"] * 1000 if r else None
        note = str(proj.detail.get("note") or "")
        if gid == target and profile.cost is not None and proj.fits:
            # the target's row repeats the figures the rest of the report quotes for it
            step_s, price, usd_run = profile.cost.step_s, profile.cost.usd_per_hour, profile.cost.usd_run
            per_1k = profile.cost.usd_per_1k_steps
        if not proj.fits and not note:
            fit = proj.detail.get("memory_fit") or {}        # projection.memory_fit's figures (older: the peak's)
            need = fit.get("need_bytes", proj.detail.get("peak_bytes"))
            usable = fit.get("capacity_bytes", proj.detail.get("usable_bytes"))
            note = (f"needs {fmt_bytes(need)}, {fmt_bytes(usable)} usable" if _finite(need) and _finite(usable)
                    else "does not fit in memory")
        if proj.fits and r is None and not note:
            note = NO_PRICE
        rows.append(GpuCostRow(
            gpu=gid, name=name, fits=proj.fits, target=gid == target,
            step_s=step_s if _finite(step_s) else None, usd_per_hour=price, usd_run=usd_run if known else None,
            mfu=proj.mfu if _finite(proj.mfu) else None,
            step=fmt_s(step_s) if proj.fits else MISSING,
            price=f"{fmt_usd(price)}/h" if price is not None else NO_PRICE,
            run=(fmt_usd(usd_run) if known and usd_run is not None
                 else f"{fmt_usd(per_1k)} / 1k steps" if per_1k is not None else MISSING),
            mfu_text=fmt_pct(proj.mfu) if proj.fits else MISSING,
            method=proj.method, note=note, usd_per_1k_steps=per_1k))
    inf = float("inf")
    rows.sort(key=lambda r: (not r.fits, r.usd_per_1k_steps if r.usd_per_1k_steps is not None else inf,
                             r.step_s if r.step_s is not None else inf, r.gpu))
    return rows
