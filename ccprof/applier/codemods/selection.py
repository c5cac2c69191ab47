"""What ``ccprof apply`` needs besides the rewrite: tweaks and their options from an advice
file, and the default output path. No file is written here. ``--option`` values are parsed by
``ccprof.artefacts.tweaks.parse_option`` (each key names one tweak's option field)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ccprof.artefacts.tweaks import TweakOptions, parse_option
from ccprof.applier.codemods import codemod_ids

__all__ = ["tweaks_from_advice", "parse_option", "default_output_path", "run_argv"]


def tweaks_from_advice(advice_set: Any, top: int | None = None) -> tuple[list[str], dict[str, TweakOptions]]:
    """The ``top`` recommended tweaks that have a codemod, in the report's order (advice.json is
    saved ranked), and, per tweak, the typed options its advice projected (``Advice.options``).

    Example: ``tweaks_from_advice(AdviceSet.from_json("ccprof-report/advice.json"), 3)``
    -> ``(["mixed_precision", "grad_accumulation", "tf32"],
    {"mixed_precision": MixedPrecisionOptions(dtype="bf16"), "grad_accumulation":
    GradAccumulationOptions(steps=4), "tf32": NoOptions()})``.
    """
    have = set(codemod_ids())
    # advice.json keeps the one ranking's order (ccprof.advisors.rank): the report's order
    ranked = [a for a in advice_set.advice if a.status == "recommended" and a.tweak in have]
    chosen = ranked[:top] if top is not None else ranked
    return [a.tweak for a in chosen], {a.tweak: a.tweak_options() for a in chosen}


def run_argv(advice_path: str | Path) -> list[str] | None:
    """The script's arguments in the run an advice file came from: ``environment.argv`` of the
    profile.json beside it (``ccprof analyze`` writes both in one folder); None when there is
    none. ``apply`` reads flag-guarded blocks (``if args.compile:``) against them."""
    import json

    profile = Path(advice_path).with_name("profile.json")
    try:
        argv = json.loads(profile.read_text(encoding="utf-8")).get("environment", {}).get("argv")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(a) for a in argv] if isinstance(argv, list) else None


def default_output_path(script: str | Path) -> Path:
    """``train.py`` -> ``train_ccprof.py`` beside it."""
    p = Path(script)
    return p.with_name(f"{p.stem}_ccprof{p.suffix or '.py'}")
