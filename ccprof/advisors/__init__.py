"""ccprof.advisors: one advisor per tweak id, ranked by projected dollars saved, plus a plan.

    from ccprof.advisors import advise, AdviceContext
    advice_set = advise(profile, AdviceContext(gpu="a100-80gb", run_steps=20_000))
    advice_set.to_json("ccprof-report/advice.json")     # {"schema": "ccprof.advice/1", ...}

Every advisor is ``advise_<id>(profile, ctx) -> Advice`` in ``ccprof/advisors/<id>.py``,
registered by ``@register(id)`` into ``ADVISORS``.
"""
from __future__ import annotations

import importlib

from ccprof.advisors._registry import ADVISORS, register
from ccprof.artefacts.advice import Advice, AdviceSet, Plan
from ccprof.advisors.catalog import TWEAKS
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.profile import Profile
from ccprof.advisors._common import make_advice
from ccprof.advisors.plan import build_plan

__all__ = ["advise", "advise_one", "rank", "AdviceContext", "ADVISORS", "register"]

for _tweak in TWEAKS:
    importlib.import_module(f"ccprof.advisors.{_tweak}")


def rank(advice: list[Advice]) -> list[Advice]:
    """The one ranking: recommended first, by expected saving (the share of the run's GPU cost
    saved x the advisor's confidence weight, ``constants.CONFIDENCE_WEIGHT``), then dollars,
    then memory. A share ranks the same with or without a known run size."""
    order = {"recommended": 0, "already_applied": 1, "not_applicable": 2}
    return sorted(advice, key=lambda a: (order.get(a.status, 3), -round(a.projected.expected_frac, 6),
                                         -a.projected.usd_saved, -a.projected.time_saved_frac,
                                         -a.projected.memory_saved_bytes, a.tweak))


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
    return AdviceSet(advice=ranked, plan=build_plan(profile, ctx, ranked))
