"""libcst codemods that rewrite a training script to keep a tweak (``ccprof apply``).

One codemod per tweak id, in its own module, registered in ``CODEMODS``. ``apply_source``
runs the asked tweaks in a fixed order (so stacking them gives one result) and returns the
new source, what was applied, what was skipped and why, and the unified diff. It never
touches a file: the CLI owns the file system.

Example::

    script = read_script("train.py")          # text, encoding, BOM, line endings
    result = apply_source(script.source, ["mixed_precision", "checkpointing"], like=script)
    print(result.diff)
    result.skipped     # {"checkpointing": "looked for ... at line 42"}
    write_script("train_ccprof.py", result.source, like=script)

The script is parsed once; each module version's facts (parents, lines, qualified names)
are computed once and shared by the tweaks that read it (see ``ccprof.script.facts``).
"""
from __future__ import annotations

import builtins
import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import libcst as cst
from libcst.codemod import CodemodContext

from ccprof.applier.codemods._base import AlreadyApplied, Skip, TurnOn, TweakCodemod
from ccprof.applier.codemods._text import (
    ScriptEncodingError,
    ScriptText,
    format_change,
    join_newlines,
    read_script,
    split_newlines,
    write_script,
)
from ccprof.artefacts.tweaks import APPLY_ORDER, TWEAKS, TweakOptions, option_key, options_for
from ccprof.artefacts.tweaks import codemod_ids as catalog_codemod_ids
from ccprof.script.facts import ModuleFacts
from ccprof.script.flags import with_option

__all__ = ["ApplyResult", "CODEMODS", "APPLY_ORDER", "register", "apply_source", "tweak_options_of", "codemod_ids",
           "ScriptSyntaxError", "ScriptText", "ScriptEncodingError", "read_script", "write_script"]

CODEMODS: dict[str, type[TweakCodemod]] = {}


class ScriptSyntaxError(ValueError):
    """The script does not parse; ``line`` is where the parser stopped."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message = path, line, message


def register(tweak: str) -> Callable[[type[TweakCodemod]], type[TweakCodemod]]:
    """Class decorator: ``@register("tf32")`` files the codemod under its tweak id (once)."""
    def deco(cls: type[TweakCodemod]) -> type[TweakCodemod]:
        if tweak in CODEMODS:
            raise ValueError(f"codemod for {tweak!r} registered twice")
        if tweak not in TWEAKS or not TWEAKS[tweak].codemod:
            raise ValueError(f"codemod for {tweak!r}: the catalog (ccprof/artefacts/tweaks.py) lists no codemod for it")
        cls.tweak = tweak
        CODEMODS[tweak] = cls
        return cls
    return deco


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply_source`` did.

    source: the rewritten script (the input when nothing applied);
    applied: tweak ids that changed the script, in the order applied;
    skipped: tweak id -> why not (names the line ccprof looked for, or says it is already there);
    diff: unified diff of input -> output ("" when unchanged);
    already_applied: the skipped ids whose reason is that the script already has the tweak;
    notes: tweak id -> what the user should still do or know (launch command, caveats);
    script: the ``ScriptText`` it was read from (``ccprof.api.apply``): write ``source`` back
    with ``write_script(path, result.source, like=result.script)`` to keep its encoding, BOM
    and line endings.
    """
    source: str
    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    diff: str = ""
    already_applied: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    script: ScriptText | None = None
    # already_applied ids the script holds behind an option the run left off: the run's arguments
    # with that option on (``_base.TurnOn``), what to run instead of a second copy
    turn_on: dict[str, list[str]] = field(default_factory=dict)
    # tweak id -> the command-line options the rewrite needs the run to be given ({"--batch_size":
    # "32"}: the run's command line sets the value the rewrite changes, so a new default alone
    # would not reach it); ``command``: the run's arguments with every such change and every
    # ``turn_on``, None when the run's own arguments do
    command_line: dict[str, dict[str, str | None]] = field(default_factory=dict)
    command: list[str] | None = None


def codemod_ids() -> list[str]:
    """Tweak ids that have a codemod, in application order."""
    _load()
    return [t for t in APPLY_ORDER if t in CODEMODS] + sorted(set(CODEMODS) - set(APPLY_ORDER))


def tweak_options_of(options: dict[str, Any] | None = None,
                     tweak_options: dict[str, TweakOptions | dict[str, Any]] | None = None) -> dict[str, TweakOptions]:
    """Per tweak, its typed options: ``tweak_options`` (advice.json's, typed or as dicts of fields)
    with ``options`` on top, keyed by ``--option`` name (``accumulation_steps``) or as
    ``<tweak>.<field>`` (``grad_accumulation.steps``). ValueError for a key no tweak has."""
    out = {t: options_for(t, o, f"options of {t}") for t, o in (tweak_options or {}).items()}
    for key, value in (options or {}).items():
        tweak, name = option_key(key)
        out[tweak] = options_for(tweak, out.get(tweak)).merged({name: value})
    return out


def apply_source(source: str, tweaks: list[str], *, options: dict[str, Any] | None = None,
                 path: str = "<script>", to_path: str | None = None,
                 like: ScriptText | None = None,
                 tweak_options: dict[str, TweakOptions | dict[str, Any]] | None = None,
                 argv: Sequence[str] | None = None,
                 sites: Sequence[Any] = ()) -> ApplyResult:
    """Rewrite ``source`` with the codemods of ``tweaks``; pure (no file I/O).

    Each tweak either rewrites the script completely or leaves it exactly as it was (a skip
    with a reason). Applying a tweak a second time changes nothing. Unknown ids are skipped; a
    codemod that crashes or writes code that does not compile is skipped with a reason that
    says it is a ccprof bug, and the other tweaks still apply.
    ``tweak_options``: each tweak's typed options (``{"grad_accumulation":
    GradAccumulationOptions(steps=4)}``, what ``selection.tweaks_from_advice`` reads from
    advice.json; a dict of its fields also does). ``options``: by ``--option`` name, over them:
    ``dtype`` ("bf16" | "fp16"), ``accumulation_steps``, ``lora_rank``, ``lora_targets``,
    ``patience``, ``num_workers``, ``batch_size``, ``embeddings_path`` ... (``cli_options()``).
    ``path`` and ``to_path`` label the diff's old and new file (the new defaults to ``path``).
    ``like``: the ``ScriptText`` that ``source`` came from (``read_script``); the result is
    checked to write back in its encoding, BOM and line endings, and the diff's first line
    says so when it would not (a ``ScriptEncodingError`` when it cannot be encoded at all).
    A leading BOM character and ``\r\n`` or ``\r`` line endings in ``source`` are kept in
    ``result.source``; the diff is of the text with ``\n`` endings, so it shows only edits.
    ``argv``: the arguments of the run the advice came from (profile.json's
    ``environment.argv``): a tweak the script holds only behind a flag that run left off
    (``if args.compile:``) is then not "already applied" but skipped, naming the flag. Without
    it such a tweak counts as applied and the reason says it is behind a flag.
    Raises ``ScriptSyntaxError`` when ``source`` does not parse.
    """
    _load()
    bom = source.startswith("\ufeff")            # read as utf-8 rather than utf-8-sig
    text, newline = split_newlines(source[1:] if bom else source)
    try:
        builtins.compile(text, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise ScriptSyntaxError(path, e.lineno or 0, e.msg) from None
    try:
        tree = cst.parse_module(text)
    except cst.ParserSyntaxError as e:
        raise ScriptSyntaxError(path, e.editor_line, e.message) from None
    facts = ModuleFacts(tree)                    # one parse; facts per module version
    per_tweak = tweak_options_of(options, tweak_options)
    wanted = list(dict.fromkeys(tweaks))
    order = {t: i for i, t in enumerate(APPLY_ORDER)}
    wanted.sort(key=lambda t: order.get(t, len(order)))
    applied: list[str] = []
    skipped: dict[str, str] = {}
    already: list[str] = []
    notes: dict[str, str] = {}
    turn_on: dict[str, list[str]] = {}
    command_line: dict[str, dict[str, str | None]] = {}
    current = None if argv is None else list(argv)      # the run's arguments, as the tweaks change them
    for tweak in wanted:
        cls = CODEMODS.get(tweak)
        if cls is None:
            skipped[tweak] = (f"no codemod for {tweak!r}; codemods exist for: {', '.join(codemod_ids())}")
            continue
        # the advice's own figures for this tweak, under what the user passed (--option wins)
        codemod = cls(CodemodContext(filename=path), per_tweak.get(tweak), argv=current, sites=sites)
        try:
            new_tree = codemod.rewrite(facts)
        except TurnOn as e:
            skipped[tweak] = str(e)
            already.append(tweak)
            turn_on[tweak] = e.argv
            current = list(e.argv)
            continue
        except AlreadyApplied as e:
            skipped[tweak] = f"already applied: {e}"
            already.append(tweak)
            continue
        except Skip as e:
            skipped[tweak] = str(e)
            continue
        except Exception as e:      # one codemod's bug must not cost the user the others
            skipped[tweak] = _bug(e)
            continue
        unread = sorted(set(codemod.options.to_dict()) - codemod.read)
        if unread:      # e.g. LoRA's lr: --verify applies it at run time, the rewrite has no place for it
            codemod.notes.append(f"not written by this rewrite: {', '.join(f'{tweak}.{n}' for n in unread)}")
        if codemod.notes:
            notes[tweak] = "; ".join(codemod.notes)
        if codemod.command_line and current is not None:
            command_line[tweak] = dict(codemod.command_line)
            for flag, value in codemod.command_line.items():
                current = with_option(current, flag, value)
        new_facts = ModuleFacts(new_tree)
        if new_facts.code == facts.code:
            skipped[tweak] = "already applied: nothing to change"
            already.append(tweak)
            continue
        try:
            _check_compiles(new_facts.code, tweak, path)
        except RuntimeError as e:
            skipped[tweak] = _bug(e)
            continue
        facts = new_facts
        applied.append(tweak)
    out = facts.code
    diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), out.splitlines(keepends=True),
                                        fromfile=path, tofile=to_path or path))
    if like is not None and applied:
        change = format_change(join_newlines(out, newline), like)
        if change:
            diff = f"# ccprof: the file is written differently from how it was read: {change}\n" + diff
    return ApplyResult(("\ufeff" if bom else "") + join_newlines(out, newline), applied, skipped, diff,
                       already, notes, turn_on=turn_on, command_line=command_line,
                       command=current if current is not None and current != list(argv or []) else None)


def _bug(e: Exception) -> str:
    """The skip reason for a codemod that crashed or wrote code that does not compile."""
    return (f"ccprof's rewrite failed on this script, a ccprof bug (please report it with the script): "
            f"{type(e).__name__}: {e}")


def _check_compiles(code: str, tweak: str, path: str) -> None:
    try:
        builtins.compile(code, path, "exec")  # the package has a module named compile
    except SyntaxError as e:  # a codemod bug, never the user's
        raise RuntimeError(f"codemod {tweak!r} produced code that does not compile: {e}") from e


_LOADED = False


def _load() -> None:
    """Import every codemod module once (each registers itself). A flag, not ``CODEMODS``
    being non-empty: importing one codemod module directly (``selection`` imports
    ``mixed_precision``) registers that one only."""
    global _LOADED
    if _LOADED:
        return
    for tweak in catalog_codemod_ids():
        importlib.import_module(f"ccprof.tweaks.{tweak}.codemod")
    _LOADED = True
