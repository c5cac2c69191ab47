"""What ``ccprof apply`` rewrites: the tweaks (named with ``-t``, or the top of an advice file's
ranking) and their options, and the default output path. No file is written here.
``--option`` values are parsed by ``ccprof.artefacts.tweaks.parse_option`` (each key names one
tweak's option field)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccprof.applier.codemods import codemod_ids
from ccprof.artefacts.tweaks import TWEAKS, TweakOptions, parse_option

__all__ = ["Selection", "select_tweaks", "tweaks_from_advice", "parse_option", "default_output_path", "run_argv"]


@dataclass(frozen=True)
class Selection:
    """The tweaks to rewrite, in the ranking's order, each with its typed options; and the
    recommended tweaks ranked above the last one picked that have no codemod (tweak -> its
    place in the ranking, 1-based), so the CLI can say why they were passed over."""
    tweaks: list[str]
    options: dict[str, TweakOptions] = field(default_factory=dict)
    no_rewrite: dict[str, int] = field(default_factory=dict)


def select_tweaks(named: list[str], advice_set: Any = None, top: int | None = None) -> Selection:
    """The tweaks ``ccprof apply`` rewrites.

    Inputs: ``named`` (``-t``, in the user's order), ``advice_set`` (``--from advice.json``) and
    ``top`` (``--top K``). With an advice file the ranking is ``ccprof.advisors.rank``'s (the
    order the report shows): without ``-t``, the top ``top`` recommended tweaks that have a
    codemod, and ``no_rewrite`` names those ranked above them that have none; with ``-t``, only
    the named tweaks, in the ranking's order, with the options advice.json projected for them.
    Raises ValueError, in the user's terms, for an unknown id, an id with no codemod, ``--top``
    without ``--from`` or with ``-t``, or nothing to apply.

    Example: ``select_tweaks([], AdviceSet.from_json("advice.json"), 2)`` ->
    ``Selection(["mixed_precision", "tf32"], {...}, {"lora": 1})`` when lora ranks first.
    """
    from ccprof.advisors import rank  # here: the one ranking; advisors load only on this path

    have = codemod_ids()
    for t in named:
        if t not in have:
            what = ("ccprof has no codemod for it (it is advice or a run-time change only)" if t in TWEAKS
                    else "no such tweak (see `ccprof tweaks`)")
            raise ValueError(f"-t {t}: {what}; codemods exist for: {', '.join(have)}")
    if top is not None and advice_set is None:
        raise ValueError("--top picks from an advice file's ranking: add --from advice.json")
    if top is not None and named:
        raise ValueError("--top picks from the ranking, -t names the tweaks: give one or the other")
    if advice_set is None:
        if not named:
            raise ValueError("nothing to apply: name tweaks with -t ID or give --from advice.json")
        return Selection(list(dict.fromkeys(named)))
    ranked = rank(list(advice_set.advice))
    by_tweak = {a.tweak: a for a in ranked}
    if named:
        order = {a.tweak: i for i, a in enumerate(ranked)}
        chosen = sorted(dict.fromkeys(named), key=lambda t: order.get(t, len(order)))
        return Selection(chosen, {t: by_tweak[t].tweak_options() for t in chosen if t in by_tweak})
    chosen, passed_over = [], {}
    recommended = [a for a in ranked if a.status == "recommended"]
    for place, a in enumerate(recommended, 1):
        if top is not None and len(chosen) >= top:
            break
        if a.tweak in have:
            chosen.append(a.tweak)
        else:
            passed_over[a.tweak] = place
    if not chosen:
        why = (f"; the recommended ones have no codemod: {', '.join(passed_over)}" if passed_over
               else "; it recommends nothing")
        raise ValueError("nothing to apply from the advice file" + why)
    return Selection(chosen, {t: by_tweak[t].tweak_options() for t in chosen}, passed_over)


def tweaks_from_advice(advice_set: Any, top: int | None = None) -> tuple[list[str], dict[str, TweakOptions]]:
    """The ``top`` recommended tweaks that have a codemod, in the ranking's order, and, per
    tweak, the typed options its advice projected (``Advice.options``).

    Example: ``tweaks_from_advice(AdviceSet.from_json("ccprof-report/advice.json"), 3)``
    -> ``(["mixed_precision", "grad_accumulation", "tf32"],
    {"mixed_precision": MixedPrecisionOptions(dtype="bf16"), "grad_accumulation":
    GradAccumulationOptions(steps=4), "tf32": NoOptions()})``.
    """
    sel = select_tweaks([], advice_set, top)
    return sel.tweaks, sel.options


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
