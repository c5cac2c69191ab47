"""ccprof.advisors: one advisor per tweak id, ranked by projected dollars saved, plus a plan.

    from ccprof.advisors import advise, AdviceContext
    advice_set = advise(profile, AdviceContext(gpu="a100-80gb", run_steps=20_000))
    advice_set.to_json("ccprof-report/advice.json")     # {"schema": "ccprof.advice/1", ...}

Every advisor is ``advise_<id>(profile, ctx) -> Advice`` in ``ccprof/tweaks/<id>/advise.py``,
registered by ``@register(id)`` into ``ADVISORS``.
"""
from __future__ import annotations

import functools
import importlib

from ccprof.advisors._common import make_advice
from ccprof.advisors._registry import ADVISORS, register
from ccprof.advisors.constants import MIN_SAVING_FRAC
from ccprof.advisors.context import AdviceContext
from ccprof.advisors.plan import build_plan
from ccprof.artefacts.advice import RISKS, Advice, AdviceSet
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import TWEAKS

__all__ = ["advise", "advise_one", "rank", "AdviceContext", "ADVISORS", "register"]

for _tweak in TWEAKS:
    importlib.import_module(f"ccprof.tweaks.{_tweak}.advise")


_STATUS_ORDER = {"recommended": 0, "no_saving": 1, "already_applied": 2, "not_applicable": 3}
_RISK_ORDER = {r: i for i, r in enumerate(RISKS)}
_CONFIDENCE_ORDER = {"high": 0, "medium": 1, "low": 2}


def _compare(a: Advice, b: Advice) -> int:
    sa, sb = _STATUS_ORDER.get(a.status, 4), _STATUS_ORDER.get(b.status, 4)
    if sa != sb:
        return -1 if sa < sb else 1
    # savings closer than either projection's band, or than ccprof's 1% threshold, are a tie (what
    # cannot tell a saving from none cannot order two savings either): then lower risk, higher
    # confidence; otherwise the figures
    tol = max(float(a.details.get("saving_band_frac", 0.0) or 0.0),
              float(b.details.get("saving_band_frac", 0.0) or 0.0), MIN_SAVING_FRAC)
    pa, pb = a.projected, b.projected
    diff = round(pa.expected_frac, 6) - round(pb.expected_frac, 6)
    if a.status == "recommended" and abs(diff) <= tol:
        keys = [lambda x: _RISK_ORDER.get(x.risk, 9), lambda x: _CONFIDENCE_ORDER.get(x.confidence, 9)]
    else:
        keys = [lambda x: -round(x.projected.expected_frac, 6), lambda x: -x.projected.usd_saved,
                lambda x: -x.projected.time_saved_frac, lambda x: -x.projected.memory_saved_bytes]
    for key in keys:
        ka, kb = key(a), key(b)
        if ka != kb:
            return -1 if ka < kb else 1
    return -1 if a.tweak < b.tweak else (1 if a.tweak > b.tweak else 0)


def rank(advice: list[Advice]) -> list[Advice]:
    """The one ranking: recommended first, by expected saving (the share of the run's GPU cost
    saved x the advisor's confidence weight, ``constants.CONFIDENCE_WEIGHT``), then dollars, time
    and memory saved; then "no measurable saving", "already applied", "not applicable". Savings
    that differ by less than the projection's band (``details["saving_band_frac"]``) or ccprof's
    1% threshold (``constants.MIN_SAVING_FRAC``) are a tie, broken by a fixed rule: lower risk
    first, then higher confidence, then the tweak id. A share
    ranks the same with or without a known run size."""
    return sorted(advice, key=functools.cmp_to_key(_compare))


def _nothing_measured(profile: Profile) -> str | None:
    """Why no advisor can project anything from this profile, or None."""
    if profile.steps.measured or profile.flops.per_step or profile.memory.peak_bytes:
        return None
    why = f" ({profile.error.kind}: {profile.error.message})" if profile.error else ""
    return f"The run measured no training step{why}, so there is nothing to project; fix the run and profile again."


def advise_one(tweak: str, profile: Profile, ctx: AdviceContext | None = None) -> Advice:
    """One advisor's Advice. Example: ``advise_one("lora", profile).projected.memory_saved_bytes``."""
    ctx = ctx or AdviceContext()
    empty = _nothing_measured(profile)
    if empty:
        return make_advice(tweak, "not_applicable", profile, ctx, confidence="high", rationale=empty,
                           snippet=f"# see `ccprof tweaks` for {tweak}")
    return ADVISORS[tweak](profile, ctx)


def advise(profile: Profile, ctx: AdviceContext | None = None) -> AdviceSet:
    """Every registered advisor's Advice for ``profile``, ranked, with the combined plan.

    Inputs: a Profile (with ``projection``/``cost`` from the hardware stage when available)
    and an AdviceContext (target GPU, price and run overrides, assumptions). Output: an
    AdviceSet whose ``advice`` holds one entry per tweak id (18) and whose ``plan`` applies
    the recommended ones in sequence.
    """
    ctx = ctx or AdviceContext()
    ranked = rank([advise_one(t, profile, ctx) for t in ADVISORS])
    configurations = None
    if ctx.configurations and not _nothing_measured(profile):
        from ccprof.advisors.configurations import plan_configurations
        configurations = plan_configurations(profile, ctx, budget_usd=ctx.budget_usd, deadline_h=ctx.deadline_h)
    return AdviceSet(advice=ranked, plan=build_plan(profile, ctx, ranked), configurations=configurations)
