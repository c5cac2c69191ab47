"""What every analysis must hold, whatever the script (issue 20): no advisor contradicts another
on a fact they both state, "recommended" always means a positive projected saving, and the
per-module FLOPs add up to the step's. Asserted on the examples and on every vendored public
script from the artefacts `ccprof analyze` wrote."""
from __future__ import annotations

from pathlib import Path

from ccprof.advisors.consistency import contradictions
from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile


def problems(out: Path) -> list[str]:
    """What is wrong with the analysis written to ``out`` (profile.json, advice.json): [] when it holds."""
    profile = Profile.from_json(out / "profile.json")
    advice = AdviceSet.from_json(out / "advice.json")
    found = list(contradictions(advice, profile))
    for a in advice.advice:
        if a.status != "recommended":
            continue
        p = a.projected
        if not (p.cost_saved_frac > 0 or p.memory_saved_bytes > 0):
            found.append(f"{a.tweak}: recommended with no projected saving ({p})")
    return found
