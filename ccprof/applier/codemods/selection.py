"""What ``ccprof apply`` rewrites: the tweaks (named with ``-t``, or the top of an advice file's
ranking) and their options, why it passed over the higher-ranked ones, what became of each tweak
(``TweakOutcome``: written, already_present, refused, skipped), and the default output path. No
file is written here.
``--option`` values are parsed by ``ccprof.artefacts.tweaks.parse_option`` (each key names one
tweak's option field)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccprof.applier.codemods import codemod_ids
from ccprof.artefacts.tweaks import TWEAKS, TweakOptions, conflict, parse_option

__all__ = ["Selection", "select_tweaks", "tweaks_from_advice", "TweakOutcome", "tweak_outcomes", "OUTCOMES",
           "parse_option", "default_output_path", "run_argv", "run_sites"]

# what became of each tweak ``ccprof apply`` considered (``TweakOutcome.outcome``)
WRITTEN = "written"                  # the rewrite has it
ALREADY_PRESENT = "already_present"  # the script already had it: nothing to write, a success
REFUSED = "refused"                  # asked for, but the codemod could not write it (the reason says why)
SKIPPED = "skipped"                  # recommended in advice.json, not picked (no rewrite, a conflict)
TURN_ON = "turn_on"                  # the script has it behind an option the run left off: run it with the option on
OUTCOMES = (WRITTEN, ALREADY_PRESENT, TURN_ON, REFUSED, SKIPPED)


@dataclass(frozen=True)
class Selection:
    """The tweaks to rewrite, each with its typed options, and what ``apply`` tells the user
    about its choice.

    tweaks: to rewrite, in the ranking's order (the user's order without an advice file);
    options: tweak -> the typed options advice.json projected for it;
    passed_over: tweak -> why a recommended tweak was not picked (no rewrite, or a conflict with
    a tweak picked before it); with ``--top K``, only those ranked above the last one picked;
    places: tweak -> its place among advice.json's recommended tweaks (1-based, the report's
    order);
    notes: tweak -> what the user should know about picking it (a conflict between two ``-t``,
    an advice that does not recommend it).
    """
    tweaks: list[str]
    options: dict[str, TweakOptions] = field(default_factory=dict)
    passed_over: dict[str, str] = field(default_factory=dict)
    places: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def select_tweaks(named: list[str], advice_set: Any = None, top: int | None = None) -> Selection:
    """The tweaks ``ccprof apply`` rewrites.

    Inputs: ``named`` (``-t``, in the user's order), ``advice_set`` (``--from advice.json``) and
    ``top`` (``--top K``). With an advice file the ranking is ``ccprof.advisors.rank``'s (the
    order the report shows). Without ``-t``: the first ``top`` recommended tweaks (all without
    ``top``) that have a codemod and do not conflict (``artefacts.tweaks.conflict``) with one
    picked before them; ``passed_over`` says why each recommended tweak that was not taken was
    passed over (with ``top``, those ranked above the last one picked). With ``-t``: only the
    named tweaks, in the ranking's order, with the options advice.json projected for them. Two
    named tweaks that conflict are both applied, as asked, with a note.
    Raises ValueError, in the user's terms, for an unknown id, an id with no codemod, ``--top``
    without ``--from`` or with ``-t``, or nothing to apply.

    Example: ``select_tweaks([], AdviceSet.from_json("advice.json"), 2)`` ->
    ``Selection(["mixed_precision", "dataloader"], {...}, passed_over={"right_size_gpu": "no
    rewrite: rent the GPU it names; ...", "tf32": "conflicts with mixed_precision (#1, picked):
    ..."}, ...)`` when right_size_gpu and tf32 rank between them.
    """
    from ccprof.advisors import rank  # here: the one ranking; advisors load only on this path

    have = codemod_ids()
    for t in named:
        if t not in have:
            what = (f"ccprof has no rewrite for it: {TWEAKS[t].no_codemod}" if t in TWEAKS
                    else "no such tweak (see `ccprof tweaks`)")
            raise ValueError(f"-t {t}: {what}; codemods exist for: {', '.join(have)}")
    if top is not None and advice_set is None:
        raise ValueError("--top picks from an advice file's ranking: add --from advice.json")
    if top is not None and named:
        raise ValueError("--top picks from the ranking, -t names the tweaks: give one or the other")
    named = list(dict.fromkeys(named))
    if advice_set is None:
        if not named:
            raise ValueError("nothing to apply: name tweaks with -t ID or give --from advice.json")
        return Selection(named, notes=_named_conflicts(named))
    ranked = rank(list(advice_set.advice))
    by_tweak = {a.tweak: a for a in ranked}
    recommended = [a for a in ranked if a.status == "recommended"]
    places = {a.tweak: i for i, a in enumerate(recommended, 1)}
    if named:
        order = {a.tweak: i for i, a in enumerate(ranked)}
        chosen = sorted(named, key=lambda t: order.get(t, len(order)))
        notes = _named_conflicts(chosen)
        for t in chosen:
            a = by_tweak.get(t)
            why = ("advice.json has no advice for it: the catalog's default options" if a is None
                   else "" if a.status == "recommended"
                   else f"advice.json does not recommend it ({a.status.replace('_', ' ')})")
            if why:
                notes[t] = f"{why}; {notes[t]}" if t in notes else why
        return Selection(chosen, {t: by_tweak[t].tweak_options() for t in chosen if t in by_tweak},
                         places={t: places[t] for t in chosen if t in places}, notes=notes)
    chosen: list[str] = []
    passed_over: dict[str, str] = {}
    for a in recommended:
        if top is not None and len(chosen) >= top:
            break
        if a.tweak not in have:
            passed_over[a.tweak] = f"no rewrite: {TWEAKS[a.tweak].no_codemod}" if a.tweak in TWEAKS else "no rewrite"
            continue
        clash = next(((c, why) for c in chosen if (why := conflict(a.tweak, c))), None)
        if clash:
            passed_over[a.tweak] = f"conflicts with {clash[0]} (#{places[clash[0]]}, picked): {clash[1]}"
            continue
        chosen.append(a.tweak)
    if not chosen:
        why = (f"; the recommended ones have no rewrite: {', '.join(passed_over)}" if passed_over
               else "; it recommends nothing")
        raise ValueError("nothing to apply from the advice file" + why)
    if top is not None:     # what ranks below the K-th pick was not asked for: not mentioned
        passed_over = {t: why for t, why in passed_over.items() if places[t] < places[chosen[-1]]}
    return Selection(chosen, {t: by_tweak[t].tweak_options() for t in chosen}, passed_over,
                     {t: places[t] for t in [*chosen, *passed_over]})


def _named_conflicts(named: list[str]) -> dict[str, str]:
    """Per named tweak, the earlier named ones it conflicts with (the user asked for both)."""
    notes: dict[str, str] = {}
    for i, t in enumerate(named):
        clashes = [f"{c}: {why}" for c in named[:i] if (why := conflict(t, c))]
        if clashes:
            notes[t] = f"conflicts with {'; '.join(clashes)} (both applied, as named with -t)"
    return notes


@dataclass(frozen=True)
class TweakOutcome:
    """What ``ccprof apply`` did with one tweak it considered.

    outcome: ``written`` | ``already_present`` | ``turn_on`` | ``refused`` | ``skipped`` (``OUTCOMES``);
    reason: why, for every outcome but ``written`` (the line the codemod looked for, the flag a
    tweak sits behind, the tweak it conflicts with, that it has no rewrite);
    place: its place among advice.json's recommended tweaks, None without one;
    note: what the user should still do or know (a launch command, a caveat, a conflict).
    """
    tweak: str
    outcome: str
    reason: str = ""
    place: int | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        """Not a failure: written, already there, or passed over by the ranking (never asked for)."""
        return self.outcome != REFUSED

    def to_dict(self) -> dict[str, Any]:
        return {"tweak": self.tweak, "outcome": self.outcome, "reason": self.reason or None,
                "place": self.place, "note": self.note or None}


def tweak_outcomes(selection: Selection, result: Any) -> list[TweakOutcome]:
    """Every tweak ``apply`` considered, with what became of it, in the ranking's order (the
    user's ``-t`` order without an advice file): ``selection`` from ``select_tweaks`` and
    ``result``, the codemods' ``ApplyResult`` for ``selection.tweaks``.

    Example: ``[o.outcome for o in tweak_outcomes(sel, result)]`` ->
    ``["skipped", "written", "refused"]`` for right_size_gpu, mixed_precision and a warm_start
    whose script has no ``nn.Embedding``.
    """
    out: list[TweakOutcome] = []
    for t, why in selection.passed_over.items():
        out.append(TweakOutcome(t, SKIPPED, why, selection.places.get(t)))
    for t in selection.tweaks:
        notes = "; ".join(n for n in (selection.notes.get(t), result.notes.get(t)) if n)
        if t in result.applied:
            out.append(TweakOutcome(t, WRITTEN, "", selection.places.get(t), notes))
        elif t in getattr(result, "turn_on", {}):
            out.append(TweakOutcome(t, TURN_ON, result.skipped.get(t, ""), selection.places.get(t), notes))
        elif t in result.already_applied:
            why = result.skipped.get(t, "").removeprefix("already applied: ")
            out.append(TweakOutcome(t, ALREADY_PRESENT, why, selection.places.get(t), notes))
        else:
            out.append(TweakOutcome(t, REFUSED, result.skipped.get(t, "the rewrite did not run"),
                                    selection.places.get(t), notes))
    if selection.places:
        out.sort(key=lambda o: selection.places.get(o.tweak, math.inf))    # stable: -t order among unranked
    return out


def tweaks_from_advice(advice_set: Any, top: int | None = None) -> tuple[list[str], dict[str, TweakOptions]]:
    """The ``top`` recommended tweaks that have a codemod and no conflict with one before them
    (``select_tweaks``), in the ranking's order, and, per tweak, the typed options its advice
    projected (``Advice.options``).

    Example: ``tweaks_from_advice(AdviceSet.from_json("ccprof-report/advice.json"), 3)``
    -> ``(["mixed_precision", "grad_accumulation", "fused_optimizer"],
    {"mixed_precision": MixedPrecisionOptions(dtype="bf16"), "grad_accumulation":
    GradAccumulationOptions(steps=4), "fused_optimizer": NoOptions()})``.
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


def run_sites(advice_path: str | Path) -> list[Any]:
    """The ``CallSite`` records of the run an advice file came from (profile.json's ``sites``
    beside it): where that run built its loader, optimizer and models and took each value from;
    [] when there are none (an older profile)."""
    from ccprof.applier.codemods._sites import load_sites

    return list(load_sites(Path(advice_path).with_name("profile.json")))


def default_output_path(script: str | Path) -> Path:
    """``train.py`` -> ``train_ccprof.py`` beside it."""
    p = Path(script)
    return p.with_name(f"{p.stem}_ccprof{p.suffix or '.py'}")
