"""Checks over a whole advice set: no two advice contradict each other on a fact they both state,
and "recommended" always means a positive projected saving.

    from ccprof.advisors import advise
    from ccprof.advisors.consistency import contradictions
    assert contradictions(advise(profile), profile) == []

A fact several advisors state goes in ``details["facts"]`` under a common key (``_common.
Fp32Matmuls.facts``: ``fp32_matmul_flops_frac``, ``fp32_matmul_time_frac``; ``step_s_model``: the
step on the target GPU as the script runs it, by the one cost model). Older advisors keep a fact
at the top of ``details`` (``fp32_matmul_flops_frac``, ``step_s_before_model``): read too.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from ccprof.advisors._common import fp32_matmul_flops
from ccprof.artefacts.advice import Advice, AdviceSet
from ccprof.artefacts.profile import Profile

__all__ = ["contradictions", "facts_of"]

# a fact stated at the top of details -> its common key in details["facts"]
_TOP_LEVEL = {"fp32_matmul_flops_frac": "fp32_matmul_flops_frac", "step_s_before_model": "step_s_model"}
# facts a GPU does not change: compared across advice whatever their target
_GPU_FREE = ("fp32_matmul_flops_frac",)
_REL_TOL = 1e-6
# what a recommended advice must not say of itself (make_advice's "no saving" heads, fmt_change's "no change")
_NOT_A_SAVING = ("No saving", "No measurable saving", "No projected saving")


def facts_of(advice: Advice) -> dict[str, float]:
    """The shared facts one advice states: ``details["facts"]``, plus the older top-level keys."""
    out = {k: v for k, v in (advice.details.get("facts") or {}).items() if isinstance(v, (int, float))}
    for key, common in _TOP_LEVEL.items():
        v = advice.details.get(key)
        if isinstance(v, (int, float)) and common not in out:
            out[common] = v
    return out


def _same(a: float, b: float) -> bool:
    # facts are stated rounded to 6 decimals (``Fp32Matmuls.facts``): half a unit of the last one apart is the same
    return math.isclose(float(a), float(b), rel_tol=_REL_TOL, abs_tol=1e-6)


def _fact_clashes(advice: list[Advice], profile: Profile) -> list[str]:
    out: list[str] = []
    stated: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for a in advice:
        gpu = str(a.details.get("gpu") or "")
        for key, v in facts_of(a).items():
            stated.setdefault(("" if key in _GPU_FREE else gpu, key), []).append((a.tweak, float(v)))
    for (gpu, key), said in sorted(stated.items()):
        first_tweak, first = said[0]
        for tweak, v in said[1:]:
            if not _same(first, v):
                on = f" on {gpu}" if gpu else ""
                out.append(f"{key}{on}: {first_tweak} states {first:.6g}, {tweak} states {v:.6g}")
    # the FLOP share is a measurement: every advice that states it states the profile's own figure
    if profile.ops:
        _, frac = fp32_matmul_flops(profile)
        for tweak, v in stated.get(("", "fp32_matmul_flops_frac"), []):
            if not _same(frac, v):
                out.append(f"fp32_matmul_flops_frac: {tweak} states {v:.6g}, the profile measures {frac:.6g}")
    return out


def _saving_clashes(a: Advice) -> list[str]:
    """A recommended advice saves: dollars when priced, else a share of the run's cost (time), or
    memory the run needs; and its rationale does not say otherwise."""
    if a.status != "recommended":
        return []
    pr, d, out = a.projected, a.details, []
    if d.get("memory_needed"):
        if pr.memory_saved_bytes <= 0:
            out.append(f"{a.tweak}: recommended for memory the run needs, but frees {pr.memory_saved_bytes} bytes")
    elif d.get("priced"):
        if pr.usd_saved <= 0:
            out.append(f"{a.tweak}: recommended, but its projected saving is ${pr.usd_saved:g} for the planned run")
    elif pr.cost_saved_frac <= 0:
        out.append(f"{a.tweak}: recommended, but it saves {pr.cost_saved_frac:.4g} of the run's cost "
                   f"(time {pr.time_saved_frac:.4g}, memory {pr.memory_saved_bytes} bytes)")
    text = a.rationale.lstrip()
    if text.startswith(_NOT_A_SAVING):
        out.append(f"{a.tweak}: recommended, but its rationale opens '{text[:60]}'")
    if (d.get("time_scope", "step") == "step" and "no change in time per step" in text
            and not d.get("memory_needed")):
        out.append(f"{a.tweak}: recommended for {pr.time_saved_frac:.4g} of the step, but its rationale says "
                   "'no change in time per step'")
    return out


def contradictions(advice_set: AdviceSet | Iterable[Advice], profile: Profile) -> list[str]:
    """Every contradiction in ``advice_set`` (an AdviceSet or a list of Advice) about ``profile``,
    one sentence each; [] when there is none.

    Checked: a shared fact (``facts_of``) stated with different values by two advice on the same
    target GPU, or not as the profile measured it; a "recommended" advice with a non-positive
    projected saving (dollars when priced, else its share of the run's cost; memory where it is
    recommended for memory the run needs), or whose rationale says it saves nothing.
    Example: ``contradictions(advise(profile), profile) == []``.
    """
    advice: list[Any] = list(advice_set.advice if isinstance(advice_set, AdviceSet) else advice_set)
    out = _fact_clashes(advice, profile)
    for a in advice:
        out.extend(_saving_clashes(a))
    return out
