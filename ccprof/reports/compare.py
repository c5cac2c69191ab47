"""The compare view: two profiles side by side (``ccprof compare``), as a CompareView."""
from __future__ import annotations

from ccprof.artefacts.profile import Profile
from ccprof.units import MISSING, fmt_bytes, fmt_flops, fmt_pct, fmt_rate, fmt_s, fmt_signed_pct, fmt_usd
from ccprof.reports.view import NO_PRICE, _finite, _mean, _now_iso, _rel, _target_mfu
from ccprof.reports.view_types import CompareRow, CompareView

__all__ = ["build_compare_view"]


def _label(profile: Profile, fallback: str) -> str:
    env = profile.environment
    name = env.script.replace("\\", "/").rsplit("/", 1)[-1] if env.script else fallback
    return f"{name} {' '.join(env.argv)}".strip() if env.argv else name


def _compare_row(metric: str, b: float | None, a: float | None, fmt, lower_is_better: bool,
                 kind: str = "rel") -> CompareRow:
    bt, at = fmt(b), fmt(a)
    if not _finite(b) or not _finite(a):
        return CompareRow(metric, bt, at, MISSING, None, b if _finite(b) else None,
                          a if _finite(a) else None)
    if kind == "pp":                                 # fractions: percentage points
        change = f"{(a - b) * 100:+.1f} pp"
    else:
        rel = _rel(b, a)
        change = fmt_signed_pct(rel) if rel is not None else MISSING
    better = None if a == b else ((a < b) == lower_is_better)
    return CompareRow(metric, bt, at, change, better, float(b), float(a))


def build_compare_view(before: Profile, after: Profile, generated_at: str | None = None) -> CompareView:
    """Side-by-side change between two profiles: step time, memory, MFU, throughput and $.

    Example: ``build_compare_view(Profile.from_json("a.json"), Profile.from_json("b.json"))``.
    """
    def step_s(p: Profile) -> float | None:
        return p.cost.step_s if p.cost is not None else _mean(p.steps.step_s)

    def cost_attr(p: Profile, attr: str) -> float | None:
        return getattr(p.cost, attr) if p.cost is not None else None

    def tput(p: Profile, attr: str) -> float | None:
        if p.cost is not None and _finite(getattr(p.cost, attr)):
            return getattr(p.cost, attr)
        s, n = step_s(p), getattr(p.steps, "tokens_per_step" if attr == "tokens_per_s" else "samples_per_step")
        return n / s if n and _finite(s) and s > 0 else None

    rows = [
        _compare_row("step time", step_s(before), step_s(after), fmt_s, True),
        _compare_row("peak memory", before.memory.peak_bytes or None, after.memory.peak_bytes or None,
                     fmt_bytes, True),
        _compare_row("MFU", _target_mfu(before), _target_mfu(after), fmt_pct, False, "pp"),
        _compare_row("FLOPs per step", before.flops.per_step or None, after.flops.per_step or None,
                     fmt_flops, True),
        _compare_row("tokens/s", tput(before, "tokens_per_s"), tput(after, "tokens_per_s"),
                     lambda x: fmt_rate(x, "tok/s"), False),
        _compare_row("samples/s", tput(before, "samples_per_s"), tput(after, "samples_per_s"),
                     lambda x: fmt_rate(x, "samples/s"), False),
        _compare_row("$ per step", cost_attr(before, "usd_per_step"), cost_attr(after, "usd_per_step"),
                     fmt_usd, True),
        _compare_row("$ planned run", cost_attr(before, "usd_run"), cost_attr(after, "usd_run"),
                     fmt_usd, True),
    ]
    notes = []
    if before.cost is None or after.cost is None:
        notes.append(f"{NO_PRICE} to " + ("either profile" if before.cost is None and after.cost is None
                                            else ("the before profile" if before.cost is None else "the after profile")))
    elif before.cost.gpu != after.cost.gpu:
        notes.append(f"different target GPUs: {before.cost.gpu} → {after.cost.gpu}")
    if before.device.name != after.device.name:
        notes.append(f"measured on different devices: {before.device.name or before.device.type} → "
                     f"{after.device.name or after.device.type}")
    if before.cost and after.cost and before.cost.run_steps != after.cost.run_steps:
        notes.append(f"planned run sizes differ: {before.cost.run_steps:,} → {after.cost.run_steps:,} steps")
    b_label, a_label = _label(before, "before"), _label(after, "after")
    if b_label == a_label:
        b_label, a_label = f"before: {b_label}", f"after: {a_label}"
    return CompareView(f"ccprof compare — {b_label} vs {a_label}", b_label, a_label, rows, notes,
                       generated_at or _now_iso())
