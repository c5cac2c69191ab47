"""The compare view: two profiles side by side (``ccprof compare``), as a CompareView.

Each side is named (when it finished, the script and its arguments, the GPU and price it was
costed at, the ccprof version, the host that profiled it), and each difference is set against
the two runs' own spread: a change inside it, or under ccprof's 1% threshold
(``advisors.constants.MIN_SAVING_FRAC``), is "no significant change", never a green "faster".

Where the spread comes from: a projected step is counts priced on a stated host, except a
DataLoader batch's making, which is measured (``GpuProjection.step_s_lo``/``step_s_hi``); a step
timed on the profiling machine (no projection) has the 95% interval of its median; memory and
FLOPs are counted (no spread).
"""
from __future__ import annotations

from ccprof.advisors.constants import MIN_SAVING_FRAC
from ccprof.artefacts.profile import Profile
from ccprof.reports.view import NO_PRICE, _finite, _now_iso, _rel, _target_mfu
from ccprof.reports.view_types import CompareRow, CompareView, RunLabel
from ccprof.stats import median_ci
from ccprof.units import MISSING, fmt_bytes, fmt_flops, fmt_pct, fmt_rate, fmt_s, fmt_signed_pct, fmt_usd

__all__ = ["build_compare_view"]


def _label(profile: Profile, fallback: str) -> str:
    env = profile.environment
    name = env.script.replace("\\", "/").rsplit("/", 1)[-1] if env.script else fallback
    return f"{name} {' '.join(env.argv)}".strip() if env.argv else name


def _run(profile: Profile, side: str) -> RunLabel:
    env, cost = profile.environment, profile.cost
    price = (f"${cost.usd_per_hour:.2f}/GPU-hour" + (f" (priced {cost.price_date})" if cost.price_date else "")
             if cost is not None and cost.usd_per_hour else NO_PRICE)
    host = profile.device.name or profile.device.type
    return RunLabel(side=side, finished_at=env.finished_at or MISSING, script=env.script or MISSING,
                    args=" ".join(env.argv) or "(none)", gpu=(cost.gpu if cost is not None else MISSING),
                    price=price, ccprof=env.ccprof or MISSING, host=host)


def _step(p: Profile) -> tuple[float | None, float]:
    """(step seconds, the relative half-width of its spread)."""
    if p.cost is not None and p.cost.step_s:
        proj = (p.projection or {}).get(p.cost.gpu)
        s = p.cost.step_s
        if proj is not None and proj.step_s and proj.step_s_lo is not None and proj.step_s_hi is not None:
            return s, max(proj.step_s_hi - proj.step_s, proj.step_s - proj.step_s_lo, 0.0) / proj.step_s
        return s, 0.0
    times = p.steps.step_cpu_s or p.steps.step_s
    spread = median_ci(list(times))
    if spread is None:
        return None, 0.0
    return spread.median, spread.rel_half_width


def _row(metric: str, b: float | None, a: float | None, fmt, lower_is_better: bool, band: float,
         kind: str = "rel") -> CompareRow:
    """One metric: before, after, the change, and whether it is beyond ``band`` (relative, both
    runs' spreads together) and ccprof's threshold."""
    bt, at = fmt(b), fmt(a)
    if not _finite(b) or not _finite(a):
        return CompareRow(metric, bt, at, MISSING, None, b if _finite(b) else None, a if _finite(a) else None)
    gate = max(band, MIN_SAVING_FRAC)
    rel = _rel(b, a)
    if kind == "pp":                                 # fractions: percentage points
        change = f"{(a - b) * 100:+.1f} pp"
        significant = b != 0 and abs(a - b) > gate * abs(b)
    else:
        change = fmt_signed_pct(rel) if rel is not None else MISSING
        significant = rel is not None and abs(rel) > gate
    band_text = f"±{fmt_pct(band)}" if band > 0 else "exact (counted)"
    if not significant:
        change = f"{change} (no significant change)" if a != b else "no change"
    better = ((a < b) == lower_is_better) if significant else None
    return CompareRow(metric, bt, at, change, better, float(b), float(a), band=band_text, significant=significant)


def build_compare_view(before: Profile, after: Profile, generated_at: str | None = None) -> CompareView:
    """Side-by-side change between two profiles: step time, memory, MFU, throughput and $, each
    with the band the two runs' own spread allows, and which run is which.

    Example: ``build_compare_view(Profile.from_json("a.json"), Profile.from_json("b.json"))``.
    """
    (sb, nb), (sa, na) = _step(before), _step(after)
    step_band = nb + na

    def cost_attr(p: Profile, attr: str) -> float | None:
        return getattr(p.cost, attr) if p.cost is not None else None

    def tput(p: Profile, attr: str, step: float | None) -> float | None:
        if p.cost is not None and _finite(getattr(p.cost, attr)):
            return getattr(p.cost, attr)
        n = getattr(p.steps, "tokens_per_step" if attr == "tokens_per_s" else "samples_per_step")
        return n / step if n and _finite(step) and step > 0 else None

    rows = [
        _row("step time", sb, sa, fmt_s, True, step_band),
        _row("peak memory", before.memory.peak_bytes or None, after.memory.peak_bytes or None, fmt_bytes, True, 0.0),
        _row("MFU", _target_mfu(before), _target_mfu(after), fmt_pct, False, step_band, "pp"),
        _row("FLOPs per step", before.flops.per_step or None, after.flops.per_step or None, fmt_flops, True, 0.0),
        _row("tokens/s", tput(before, "tokens_per_s", sb), tput(after, "tokens_per_s", sa),
             lambda x: fmt_rate(x, "tok/s"), False, step_band),
        _row("samples/s", tput(before, "samples_per_s", sb), tput(after, "samples_per_s", sa),
             lambda x: fmt_rate(x, "samples/s"), False, step_band),
        _row("$ per step", cost_attr(before, "usd_per_step"), cost_attr(after, "usd_per_step"), fmt_usd, True,
             step_band),
        _row("$ planned run", cost_attr(before, "usd_run"), cost_attr(after, "usd_run"), fmt_usd, True, step_band),
    ]
    notes = []
    if before.cost is None or after.cost is None:
        notes.append(f"{NO_PRICE} to " + ("either profile" if before.cost is None and after.cost is None
                                            else ("the before profile" if before.cost is None else "the after profile")))
        if before.cost is None and after.cost is None:
            notes.append("step times are this machine's CPU times, not a GPU's")
    elif before.cost.gpu != after.cost.gpu:
        notes.append(f"different target GPUs: {before.cost.gpu} → {after.cost.gpu}")
    if before.device.name != after.device.name:
        notes.append(f"measured on different devices: {before.device.name or before.device.type} → "
                     f"{after.device.name or after.device.type}")
    if before.cost and after.cost and before.cost.run_steps != after.cost.run_steps:
        notes.append(f"planned run sizes differ: {before.cost.run_steps:,} → {after.cost.run_steps:,} steps")
    changed = [r.metric for r in rows if r.significant]
    verdict = ("no significant change: every difference is within the runs' own spread or under "
               f"{fmt_pct(MIN_SAVING_FRAC)}" if not changed else "changed: " + ", ".join(changed))
    b_label, a_label = _label(before, "before"), _label(after, "after")
    if b_label == a_label:
        b_label, a_label = f"before: {b_label}", f"after: {a_label}"
    return CompareView(f"ccprof compare — {b_label} vs {a_label}", b_label, a_label, rows, notes,
                       generated_at or _now_iso(), runs=[_run(before, "before"), _run(after, "after")],
                       verdict=verdict)
