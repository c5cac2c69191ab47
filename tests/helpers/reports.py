"""Report inputs shared by the HTML tests with and without a browser."""
from __future__ import annotations

import dataclasses

from ccprof.artefacts.advice import Advice, AdviceSet, Projected
from ccprof.artefacts.profile import Profile
from tests.helpers.paths import FIXTURES

EVIL = "<script>window.__pwned=1</script>\"'&amp;"


def sample():
    return (Profile.from_json(FIXTURES / "profile_sample.json"),
            AdviceSet.from_json(FIXTURES / "advice_sample.json"))


def evil_profile() -> tuple[Profile, AdviceSet]:
    """A profile whose user-controlled strings all try to inject markup or script."""
    profile, advice = sample()
    mods = list(profile.model.modules)
    mods[1] = dataclasses.replace(mods[1], name=f"lm_head{EVIL}", class_="<img src=x onerror=\"window.__pwned=2\">")
    profile = dataclasses.replace(
        profile,
        environment=dataclasses.replace(profile.environment, script=f"/tmp/{EVIL}/train {EVIL}.py",
                                        argv=["--name", f"\"><img src=x onerror=\"window.__pwned=3\">{EVIL}"]),
        model=dataclasses.replace(profile.model, modules=mods))
    bad = Advice("mixed_precision", "recommended", f"Title {EVIL}", Projected(0.1, 0, 1.0),
                 rationale=f"because {EVIL}", snippet="x = '</script><script>window.__pwned=4</script>'")
    advice = dataclasses.replace(advice, advice=[bad, *advice.advice[1:]])
    return profile, advice
