"""The advisor registry: a plain dict filled by ``@register(tweak_id)``, refusing duplicates
(as torch.utils.flop_counter's registry does)."""
from __future__ import annotations

from typing import Callable

from ccprof.artefacts.tweaks import TWEAKS

ADVISORS: dict[str, Callable] = {}


def register(tweak: str) -> Callable[[Callable], Callable]:
    """Register ``advise_<tweak>(profile, ctx) -> Advice`` under its catalog id."""
    if tweak not in TWEAKS:
        raise KeyError(f"{tweak!r} is not a catalog tweak id")

    def deco(fn: Callable) -> Callable:
        if tweak in ADVISORS:
            raise RuntimeError(f"advisor for {tweak!r} registered twice ({ADVISORS[tweak].__module__}, {fn.__module__})")
        ADVISORS[tweak] = fn
        return fn
    return deco
