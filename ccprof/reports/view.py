"""View models: what a report shows, as plain dataclasses built by pure functions.

The templates (``templates/*.html.j2``), the plotly figures (``figures.py``) and the terminal
summary (``terminal.py``) read these and nothing else, so every number is formatted once,
here, and the gold-file tests pin the whole content of a report without a browser
(the coverage.py ``html.py`` pattern: templates hold no logic). The dataclasses are in
``view_types.py``; the compare view is built in ``compare.py``.

    view = build_report_view(profile, advice_set)
    view.glance.cards[0].value        # "$0.0011" per step
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from ccprof.artefacts.advice import Advice, AdviceSet
from ccprof.artefacts.tweaks import TWEAKS
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.vocab import STEP_PHASES
from ccprof.reports.view_types import (
    Card, ChartSpec, CompareRow, CompareView, FlopsNode, Glance, GpuCostRow, GpuTimeline, Header, LossSeries,
    MeasuredRow, MemoryChart, MemoryPart, ModuleRow, OtherAdvice, Phase, PlanView, Projected, ProjectedPhase,
    Recommendation, ReportView, WaterfallStep,
)
from ccprof.units import (
    MISSING, fmt_bytes, fmt_count, fmt_delta_usd, fmt_flops, fmt_pct,
    fmt_s, fmt_signed_pct, fmt_usd,
)
from ccprof.advisors import rank
from ccprof.advisors.constants import CONFIDENCE_WEIGHT as W, STATUS_LABEL
from ccprof.hardware import right_size

__all__ = [
    "Card", "Header", "Glance", "MeasuredRow", "Recommendation", "OtherAdvice", "PlanView",
    "ChartSpec", "MemoryPart", "MemoryChart", "Phase", "FlopsNode", "GpuCostRow",
    "WaterfallStep", "GpuTimeline", "LossSeries", "ModuleRow", "ReportView", "CompareRow",
    "CompareView", "build_report_view", "gpu_cost_rows",
    "MAX_MODULE_ROWS", "MAX_TIMELINE_POINTS", "NO_PRICE",
]

# Size caps keep the self-contained report small (the custom plotly.js bundle is ~1.2 MB; the issue's
# budget is 5 MB): deeper modules and extra NVML samples stay in profile.json.
MAX_MODULE_ROWS = 400
MAX_TIMELINE_POINTS = 1500
NO_PRICE = "no price attached"
PHASE_ORDER = STEP_PHASES
MEMORY_PARTS = (("params_bytes", "parameters"), ("grads_bytes", "gradients"),
                ("optimizer_state_bytes", "optimizer state"),
                ("activations_bytes", "activations"), ("other_bytes", "other (inputs, temporaries)"))


# --------------------------------------------------------------------------- helpers
def run_known(profile: Profile) -> bool:
    """Whether the planned run has a size, so that dollars of the run mean something."""
    return profile.cost is not None and profile.cost.run_steps > 0


def rank_note() -> str:
    """How the recommendations are ordered, with the weights the advisors use."""
    weights = ", ".join(f"{k} {v:g}" for k, v in W.items())
    return (f"Ranked by expected saving: the share of the run's GPU cost a tweak saves x its "
            f"confidence weight ({weights}).")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if _finite(x)]
    return sum(xs) / len(xs) if xs else None


def _now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _target_mfu(profile: Profile) -> float | None:
    proj = profile.projection or {}
    for gid in (profile.device.catalog_id, profile.cost.gpu if profile.cost else None):
        if gid and gid in proj and _finite(proj[gid].mfu):
            return proj[gid].mfu
    return None


def _no_price(profile: Profile) -> str:
    """"no price attached: <why>", without saying it twice when the reason already does."""
    why = profile.reasons.get("cost", "") or "no target GPU price"
    return why if why.lower().startswith(NO_PRICE) else f"{NO_PRICE}: {why}"


def _saved_time(frac: float | None) -> str:
    if not _finite(frac):
        return MISSING
    if abs(frac) < 5e-4:
        return "no change"
    return f"{fmt_pct(frac)} faster" if frac > 0 else f"{fmt_pct(-frac)} slower"


def _saved_memory(n: int | None) -> str:
    if not _finite(n):
        return MISSING
    if n == 0:
        return "no change"
    return f"frees {fmt_bytes(n)}" if n > 0 else f"uses {fmt_bytes(-n)} more"


def _saved_usd(usd: float | None, priced: bool) -> str:
    if not priced:
        return "run size unknown"
    if not _finite(usd):
        return MISSING
    if usd == 0:
        return "no change"
    return f"saves {fmt_usd(usd)}" if usd > 0 else f"costs {fmt_usd(-usd)} more"


def _tweak_title(tweak: str, given: str) -> str:
    if given:
        return given
    info = TWEAKS.get(tweak)
    return info.title if info else tweak


# --------------------------------------------------------------------------- sections
def _header(profile: Profile, generated_at: str) -> Header:
    env, dev, cost = profile.environment, profile.device, profile.cost
    device = dev.name or dev.type
    if dev.type != "cpu" and dev.memory_bytes:
        device += f" ({fmt_bytes(dev.memory_bytes)})"
    if dev.count > 1:
        device += f" × {dev.count}"
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
    measured_s = _mean(steps.step_s)
    method = (cost.detail or {}).get("step_s_method", "") if cost is not None else ""
    on_target = profile.device.type == "cuda" and profile.device.catalog_id in (None, cost.gpu) \
        if cost is not None else False
    if cost is not None and method != "measured" and not (not method and on_target):
        # the figure is a projection onto the target GPU: say so, and show what was measured
        here = (f"; measured {fmt_s(measured_s)} on {profile.device.name or profile.device.type}"
                if measured_s is not None else "")
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


def _rel(before: float | None, after: float | None) -> float | None:
    if not _finite(before) or not _finite(after) or before == 0:
        return None
    return (after - before) / abs(before)


def _measured_rows(a: Advice, priced: bool) -> list[MeasuredRow]:
    m, p = a.measured, a.projected
    if m is None or m.failed:
        return []
    rows = [MeasuredRow("step time", _saved_time(p.time_saved_frac), _saved_time(m.time_saved_frac)),
            MeasuredRow("memory", _saved_memory(p.memory_saved_bytes), _saved_memory(m.memory_saved_bytes)),
            MeasuredRow("dollars", _saved_usd(p.usd_saved, priced), _saved_usd(m.usd_saved, priced)),
            MeasuredRow("step time after", fmt_s(p.step_s_after), fmt_s(m.step_s)),
            MeasuredRow("peak memory after", fmt_bytes(p.peak_bytes_after), fmt_bytes(m.peak_bytes))]
    if m.loss_delta is not None:
        rows.append(MeasuredRow("last loss vs baseline", MISSING, f"{m.loss_delta:+.4g}"))
    if m.time_error_frac is not None or m.memory_error_frac is not None:
        rows.append(MeasuredRow("projection error (time / memory)", MISSING,
                                f"{fmt_signed_pct(m.time_error_frac)} / {fmt_signed_pct(m.memory_error_frac)}"))
    return rows


def _recommendations(profile: Profile, advice: AdviceSet) -> tuple[list[Recommendation], list[OtherAdvice]]:
    priced = run_known(profile)
    plan = set(advice.plan.tweaks)
    recs = [a for a in rank(list(advice.advice)) if a.status == "recommended"]
    out = []
    for i, a in enumerate(recs, 1):
        m = a.measured
        out.append(Recommendation(
            rank=i, tweak=a.tweak, anchor=f"tweak-{a.tweak}", title=_tweak_title(a.tweak, a.title),
            time=_saved_time(a.projected.time_saved_frac),
            memory=_saved_memory(a.projected.memory_saved_bytes),
            usd=_saved_usd(a.projected.usd_saved, priced),
            cost_share=f"{fmt_pct(a.projected.cost_saved_frac)} of the cost",
            expected=(f"expected {fmt_pct(a.projected.expected_frac)} (x{a.details.get('confidence_weight', 0):g} "
                      f"for {a.confidence} confidence)"),
            confidence=a.confidence, risk=a.risk,
            rationale=a.rationale, assumptions=list(a.assumptions), sources=list(a.sources),
            snippet=a.snippet, auto_apply=a.auto_apply, in_plan=a.tweak in plan,
            measured=_measured_rows(a, priced), measured_note=(m.note or "") if m else "",
            harmful=bool(m and m.harmful), failed=bool(m and m.failed)))
    order = {"no_saving": 0, "already_applied": 1, "not_applicable": 2}
    others = [OtherAdvice(a.tweak, f"tweak-{a.tweak}", _tweak_title(a.tweak, a.title),
                          STATUS_LABEL.get(a.status, a.status), a.rationale)
              for a in sorted((a for a in advice.advice if a.status != "recommended"),
                              key=lambda a: (order.get(a.status, 3), a.tweak))]
    return out, others


def _plan(profile: Profile, advice: AdviceSet) -> PlanView | None:
    plan = advice.plan
    if not plan.tweaks:
        return None
    parts = [f"step time {fmt_s(plan.step_s_before)} → {fmt_s(plan.step_s_after)}",
             f"peak memory {fmt_bytes(plan.peak_bytes_before)} → {fmt_bytes(plan.peak_bytes_after)}"]
    if run_known(profile):
        parts.append(f"planned run {fmt_usd(plan.usd_run_before)} → {fmt_usd(plan.usd_run_after)}")
    else:
        parts.append(f"cost of the run {fmt_signed_pct(plan.cost_frac_after - 1)} (its size is unknown)")
    if plan.gpu:
        parts.append(f"on {plan.gpu}")
    return PlanView(list(plan.tweaks), "; ".join(parts), list(plan.conflicts))


def _memory(profile: Profile, catalog: dict[str, Any]) -> MemoryChart:
    mem = profile.memory
    parts = [MemoryPart(label, int(getattr(mem, attr) or 0), fmt_bytes(getattr(mem, attr) or 0))
             for attr, label in MEMORY_PARTS]
    cap, label = profile.device.memory_bytes, ""
    if cap:
        label = f"{profile.device.name or profile.device.type} capacity {fmt_bytes(cap)}"
    elif profile.cost is not None:
        gid = profile.cost.gpu
        cap = catalog[gid].memory_bytes if gid in catalog else None
        if cap:
            label = f"{gid} capacity {fmt_bytes(cap)}"
    return MemoryChart(parts, int(mem.peak_bytes), cap or None, label)


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


def verification_lines(advice: AdviceSet) -> list[str]:
    """``--verify`` in sentences: each failed re-run with the script's error line, the top
    tweaks no re-run can measure and why, then what was measured."""
    v = advice.verification
    if v is None:
        return []
    out = [f"The re-run with {t} failed: {line}" for t, line in v.failed.items()]
    out += [f"{t} cannot be measured by a re-run: {why}" for t, why in v.not_measurable.items()]
    ok = [t for t in v.measured if t not in v.failed]
    if ok:
        out.append(f"Measured by a re-run: {', '.join(ok)}.")
    if v.all_failed:
        out.insert(0, "Every --verify re-run failed: nothing below is measured.")
    return out


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


def _phases(profile: Profile) -> list[Phase]:
    ph = profile.steps.phase_s
    names = [n for n in PHASE_ORDER if n in ph] + sorted(n for n in ph if n not in PHASE_ORDER)
    return [Phase(n, float(ph[n]), fmt_s(ph[n])) for n in names if _finite(ph[n])]


def _parent(name: str, names: set[str]) -> str:
    parts = name.split(".")
    for k in range(len(parts) - 1, 0, -1):
        cand = ".".join(parts[:k])
        if cand in names:
            return cand
    return ""


def _flops_tree(profile: Profile) -> list[FlopsNode]:
    mods = {m.name: (m.class_, int(m.flops)) for m in profile.model.modules}
    if not mods and profile.flops.by_module:
        mods = {k: ("", int(v)) for k, v in profile.flops.by_module.items()}
    if not any(f for _, f in mods.values()):
        return []
    names = set(mods)
    parent = {n: _parent(n, names) for n in names if n}
    # keep the tree small enough to draw: shallowest modules first
    keep = sorted(names, key=lambda n: (0 if not n else n.count(".") + 1, n))[:MAX_MODULE_ROWS]
    keep_set = set(keep)
    children: dict[str, list[str]] = {}
    for n in keep:
        if n:
            children.setdefault(parent[n], []).append(n)
    total: dict[str, int] = {}

    def value(n: str) -> int:  # a parent is at least the sum of its children ("total" branches)
        if n not in total:
            total[n] = max(mods[n][1], sum(value(c) for c in children.get(n, [])))
        return total[n]

    root_label = (mods[""][0] if "" in mods and mods[""][0] else "model")
    has_root = "" in keep_set
    out = []
    for n in keep:
        v = value(n)
        if v <= 0:
            continue
        node_id = n or "(root)"
        par = "" if not n else (parent[n] or ("(root)" if has_root else ""))
        label = root_label if not n else (n[len(parent[n]) + 1:] if parent[n] else n)
        cls = mods[n][0]
        text = f"{n} ({cls})" if n and cls else (n or root_label)
        out.append(FlopsNode(node_id, par, label, v, f"{text}: {fmt_flops(v)}"))
    return out


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
            need, usable = proj.detail.get("peak_bytes"), proj.detail.get("usable_bytes")
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


def _waterfall(profile: Profile, advice: AdviceSet) -> list[WaterfallStep]:
    plan = advice.plan
    if not run_known(profile) or not plan.tweaks or not plan.steps:
        return []
    out = [WaterfallStep(f"today ({profile.cost.gpu})", plan.usd_run_before, "absolute",
                         fmt_usd(plan.usd_run_before))]
    prev = plan.usd_run_before
    for st in plan.steps:
        d = st.usd_run - prev
        out.append(WaterfallStep(st.tweak, d, "relative", fmt_delta_usd(d)))
        prev = st.usd_run
    out.append(WaterfallStep("with the plan", plan.usd_run_after, "total", fmt_usd(plan.usd_run_after)))
    return out


def _timeline(profile: Profile) -> GpuTimeline | None:
    g = profile.gpu
    if g is None or not g.samples:
        return None
    samples = g.samples
    stride = max(1, math.ceil(len(samples) / MAX_TIMELINE_POINTS))
    samples = samples[::stride]
    return GpuTimeline(
        t_s=[s.t_s for s in samples],
        sm_util_pct=[s.sm_util_pct for s in samples],
        power_w=[s.power_w for s in samples],
        mem_used_gib=[None if s.mem_used_bytes is None else round(s.mem_used_bytes / 2**30, 4)
                      for s in samples])


def _loss(profile: Profile) -> LossSeries:
    loss = [x if _finite(x) else None for x in profile.steps.loss]
    first = profile.steps.warmup + 1
    return LossSeries(list(range(first, first + len(loss))), loss)


def _modules(profile: Profile) -> tuple[list[ModuleRow], str]:
    mods = sorted(profile.model.modules, key=lambda m: (m.depth, m.name))
    note = ""
    if len(mods) > MAX_MODULE_ROWS:
        note = (f"{len(mods) - MAX_MODULE_ROWS} deeper modules are not shown; "
                f"profile.json has all {len(mods)}.")
        mods = mods[:MAX_MODULE_ROWS]
    order = {m.name: i for i, m in enumerate(profile.model.modules)}
    mods.sort(key=lambda m: order[m.name])          # tree order, as the profiler listed them
    return [ModuleRow(m.name or "(root)", m.class_, m.depth, m.params, m.trainable_params, m.flops,
                      m.activation_bytes, fmt_count(m.params), fmt_count(m.trainable_params),
                      fmt_flops(m.flops), fmt_bytes(m.activation_bytes)) for m in mods], note


def _charts(profile: Profile, memory: MemoryChart, phases: list[Phase], tree: list[FlopsNode],
            gpu_costs: list[GpuCostRow], waterfall: list[WaterfallStep],
            timeline: GpuTimeline | None, loss: LossSeries, advice: AdviceSet) -> list[ChartSpec]:
    fitting_priced = [r for r in gpu_costs if r.fits and r.usd_per_1k_steps is not None]
    if profile.gpu is None:
        gpu_reason = profile.reasons.get("gpu", "no NVML samples: the profile ran without an NVIDIA GPU")
    else:
        gpu_reason = "NVML recorded no samples" if timeline is None else ""
    if profile.cost is None:
        cost_reason = _no_price(profile)
    elif not profile.projection:
        cost_reason = profile.reasons.get("projection", "no GPU projection in the profile")
    else:
        cost_reason = "no catalog GPU with a price fits this job" if not fitting_priced else ""
    if profile.cost is None:
        wf_reason = _no_price(profile)
    elif not run_known(profile):
        wf_reason = "the planned run size is unknown (pass --total-steps or --epochs)"
    elif not advice.plan.tweaks:
        wf_reason = "no recommended plan"
    else:
        wf_reason = "" if waterfall else "the plan has no steps"
    cap = (f"against {memory.capacity_label}" if memory.capacity_bytes
           else "no device capacity known (CPU run, no target GPU)")
    valid_loss = [x for x in loss.loss if x is not None]
    per_1k = profile.cost is not None and not run_known(profile)
    return [
        ChartSpec("memory", "Memory ledger at the peak", f"Peak {fmt_bytes(memory.peak_bytes)}, {cap}.",
                  memory.peak_bytes > 0, "" if memory.peak_bytes > 0 else "no memory measured"),
        ChartSpec("phases", "Step time by phase", "Mean seconds per phase of one step.",
                  bool(phases), "" if phases else "no phase timings measured"),
        ChartSpec("flops", "FLOPs by module", "Forward + backward FLOPs of one step; click to zoom.",
                  bool(tree), "" if tree else "no FLOPs counted by module"),
        ChartSpec("gpu_costs", "Planned run on every GPU it fits" if not per_1k
                  else "Cost per 1,000 steps on every GPU it fits",
                  ("Cost of the planned run per catalog GPU; the target is highlighted." if not per_1k
                   else "The planned run size is unknown, so GPUs compare per 1,000 steps; the target is highlighted."),
                  not cost_reason, cost_reason),
        ChartSpec("waterfall", "From today's cost to the plan's",
                  "Each tweak's effect, applied in sequence.", not wf_reason, wf_reason),
        ChartSpec("gpu_timeline", "GPU utilization and power", "NVML samples during the measured steps.",
                  not gpu_reason, gpu_reason),
        ChartSpec("loss", "Loss over the measured steps", "The loss the script computed at each step.",
                  bool(valid_loss), "" if valid_loss else
                  profile.reasons.get("loss", "no loss value seen (the script's loss was not a tensor ccprof could read)")),
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
        evaluation=evaluation_line(profile), verification=verification_lines(advice))
