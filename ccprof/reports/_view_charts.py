"""Report sections drawn as charts and tables of the measured run: the memory ledger, the phases,
the FLOPs by module, the NVML timeline, the loss, the module table, and each chart's title,
caption and reason when it cannot be drawn.
"""
from __future__ import annotations

import math
from typing import Any

from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.reports._view_common import (
    MAX_MODULE_ROWS,
    MAX_TIMELINE_POINTS,
    MEMORY_PARTS,
    PHASE_ORDER,
    _finite,
    _no_price,
    run_known,
)
from ccprof.reports.view_types import (
    ChartSpec,
    FlopsNode,
    GpuCostRow,
    GpuTimeline,
    LossSeries,
    MemoryChart,
    MemoryPart,
    ModuleRow,
    Phase,
    WaterfallStep,
)
from ccprof.units import fmt_bytes, fmt_count, fmt_flops, fmt_s


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


def _phases(profile: Profile) -> list[Phase]:
    if profile.dry_run is not None:
        return []           # the fake tensors' bookkeeping times: nothing a GPU run would show
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

    module_s, gid = _module_s(profile)
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
        sec = module_s.get(n)
        when = f", {fmt_s(sec)} on {gid}" if sec is not None else ""
        out.append(FlopsNode(node_id, par, label, v, f"{text}: {fmt_flops(v)}{when}"))
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
    # a dry run's losses are stand-ins (1.0 each): no curve
    loss = [x if _finite(x) else None for x in profile.steps.loss] if profile.dry_run is None else []
    first = profile.steps.warmup + 1
    return LossSeries(list(range(first, first + len(loss))), loss)


def _module_s(profile: Profile) -> tuple[dict[str, float], str]:
    """The target GPU's per-module device seconds and its id ({} and "" when not projected)."""
    gid = profile.cost.gpu if profile.cost is not None else ""
    proj = (profile.projection or {}).get(gid)
    return (dict(proj.module_s), gid) if proj is not None and proj.module_s else ({}, "")


def _modules(profile: Profile) -> tuple[list[ModuleRow], str]:
    mods = sorted(profile.model.modules, key=lambda m: (m.depth, m.name))
    notes = []
    frac = profile.flops.module_frac()
    if frac is not None and profile.model.modules and profile.flops.by_module:
        notes.append(f"{frac:.1%} of the step's {fmt_flops(profile.flops.per_step)} ran in a module; "
                     f"the other {fmt_flops(profile.flops.per_step - profile.flops.module_flops())} ran outside "
                     "every module (a loss of the script's own, the optimizer) and is in no row.")
    module_s, gid = _module_s(profile)
    if module_s:
        notes.append(f"Projected time: device seconds on {gid} of the kernels each module owns, its children "
                     "included, under the step's own precision; host dispatch and the data wait are in no module.")
    if len(mods) > MAX_MODULE_ROWS:
        notes.append(f"{len(mods) - MAX_MODULE_ROWS} deeper modules are not shown; "
                     f"profile.json has all {len(mods)}.")
        mods = mods[:MAX_MODULE_ROWS]
    order = {m.name: i for i, m in enumerate(profile.model.modules)}
    mods.sort(key=lambda m: order[m.name])          # tree order, as the profiler listed them
    rows = []
    for m in mods:
        sec = module_s.get(m.name) if module_s else None
        rows.append(ModuleRow(m.name or "(root)", m.class_, m.depth, m.params, m.trainable_params, m.flops,
                              m.activation_bytes, fmt_count(m.params), fmt_count(m.trainable_params),
                              fmt_flops(m.flops), fmt_bytes(m.activation_bytes), m.op_bytes, fmt_bytes(m.op_bytes) if m.op_bytes else "",
                              sec, "" if sec is None else fmt_s(sec)))
    return rows, " ".join(notes)


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
    cfg = advice.configurations
    fit_rows = [r for r in (cfg.rows if cfg else []) if r.fits and r.run_hours is not None]
    configs_ok = bool(fit_rows)
    configs_reason = ("" if configs_ok or cfg is None
                      else "the planned run size is unknown (pass --total-steps or --epochs)" if not cfg.run_steps
                      else "no configuration fits")
    per_1k = profile.cost is not None and not run_known(profile)
    configs = [ChartSpec("configs", "Every configuration that fits: dollars against hours",
                         "One point per GPU type, GPU count and memory tweak (diamonds: with a memory tweak; "
                         "larger: more GPUs); lower left is cheaper and sooner.", configs_ok, configs_reason)
               ] if cfg is not None else []          # no plan asked for (a profile advised without it): no box
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
        *configs,
    ]
