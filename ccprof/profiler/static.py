"""Static facts about a training script, read from its source with libcst.

What the source says complements what the profiler measures: a ``GradScaler`` that never
ran in the measured steps, an ``EarlyStoppingCallback``, the keyword values a
``TrainingArguments(...)`` call was given. Library names are matched by *qualified name*
(``libcst.metadata.QualifiedNameProvider``), so ``import torch as T; T.autocast(...)``,
``from torch.cuda.amp import autocast`` and ``from torch import amp; amp.autocast(...)``
all count, and a function of the user's own that happens to be called ``checkpoint`` does
not. Method calls on the user's objects (``model.eval()``, ``model.from_pretrained``,
``optimizer.step()``) are matched by attribute name, since their receivers have no
importable name.

What the script already does (autocast, GradScaler, checkpointing, accumulation, compile, TF32,
a fused optimizer, DataLoader workers, early stopping, DDP/FSDP, peft, weights loaded with
``from_pretrained``) is read by
``ccprof.script.applied``, the functions the codemods' "already applied" checks ask too, with
the run's argv: a fact whose every place sits behind a flag the run left off is False, with its
line in ``inactive`` and the flag in ``behind``. This module adds the facts only the report
needs (validation, a state dict loaded, the framework, the Trainer's keyword values).

``read_static_facts(path)`` never raises on a bad script: a file that does not parse
gives ``StaticFacts(parsed=False, note=...)`` naming the line.
"""
from __future__ import annotations

import ast
import re
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import libcst as cst

from ccprof.artefacts.profile import StaticFacts
from ccprof.script.applied import FACTS as APPLIED_FACTS
from ccprof.script.applied import applied
from ccprof.script.facts import ModuleFacts
from ccprof.script.flags import script_options
from ccprof.script.info import ScriptInfo
from ccprof.script.names import matches

__all__ = ["read_static_facts", "static_facts_from_source", "reconcile", "RUNTIME_FACTS"]

# Facts the profiler also observes while the script runs. For these the run is the truth:
# the source may hold them behind a flag (`if compile:`, `nullcontext() if cpu else autocast`).
RUNTIME_FACTS = ("autocast", "grad_scaler", "checkpointing", "accumulation", "from_pretrained",
                 "load_state_dict", "ddp", "fsdp", "data_parallel", "compile")


# ---------------------------------------------------------------------------------------
# Facts from references to library objects that no tweak's "already applied" reads: fact ->
# the kind in ccprof.script.names.

_REFERENCE_FACTS = ("data_parallel", "hf_trainer", "lightning")
# configuration calls whose keywords are read (_KWARG_RULES), first match wins
_OWNERS = ("training_arguments", "lightning_trainer", "accelerator", "hf_trainer")


# ---------------------------------------------------------------------------------------
# Rules on keyword values of configuration calls: (owner, keyword) -> facts it implies.
# ``value`` is the literal value, or _NOT_LITERAL when the source passes an expression.

_NOT_LITERAL = object()


def _strategy_enabled(value: Any) -> bool:
    if value is _NOT_LITERAL:
        return True
    return value not in ("no", "NO", None, False)


# owner -> keyword -> [(fact, predicate(value))]; the facts a tweak reads are ccprof.script.applied's
_KWARG_RULES: dict[str, dict[str, list[tuple[str, Callable[[Any], bool]]]]] = {
    "training_arguments": {
        "eval_strategy": [("validation", _strategy_enabled)],
        "evaluation_strategy": [("validation", _strategy_enabled)],
        "do_eval": [("validation", lambda v: v is not _NOT_LITERAL and bool(v))],
    },
}


# ---------------------------------------------------------------------------------------
# Name-based rules for the user's own objects and functions.

# evaluation functions users define (nanoGPT's estimate_loss, Lightning's validation_step)
_EVAL_DEF = re.compile(
    r"^(validation_step|evaluate|validate|estimate_loss|run_(eval|validation)"
    r"|eval(uate)?_(epoch|loop|model)|val(idation|idate)?_(epoch|loop))$"
)

# every boolean fact of StaticFacts (one list: the artefact's fields)
_FACTS = tuple(f.name for f in fields(StaticFacts) if f.type in ("bool", bool) and f.name != "parsed")


def _literal(code: str) -> Any:
    """The Python value of a literal expression's source, or _NOT_LITERAL."""
    try:
        value = ast.literal_eval(code)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NOT_LITERAL
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    """Tuples and sets as lists, so the value survives a JSON round-trip unchanged."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, complex) or isinstance(value, bytes):
        return repr(value)
    return value


class _Collector(cst.CSTVisitor):
    """Walks a module once and records the first line of each fact and the call keywords. It
    reads lines and qualified names from the script model the codemods read too
    (``ccprof.script.facts.ModuleFacts``)."""

    def __init__(self, facts: ModuleFacts) -> None:
        super().__init__()
        self.facts = facts
        self.module = facts.module
        self.lines: dict[str, int] = {}
        self.training_args: dict[str, Any] = {}

    # -- helpers ------------------------------------------------------------------------
    def _line(self, node: cst.CSTNode) -> int:
        return self.facts.line(node)

    def _see(self, fact: str, node: cst.CSTNode) -> None:
        line = self._line(node)
        if fact not in self.lines or line < self.lines[fact]:
            self.lines[fact] = line

    def _qnames(self, node: cst.CSTNode) -> list[str]:
        return sorted(self.facts.qnames(node))

    def _code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    # -- library references by qualified name ---------------------------------------------
    def _reference(self, node: cst.CSTNode) -> None:
        for qname in self._qnames(node):
            for fact in _REFERENCE_FACTS:
                if matches(fact, qname):
                    self._see(fact, node)

    def visit_Name(self, node: cst.Name) -> None:
        self._reference(node)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._reference(node)

    # -- calls --------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        owner = None
        for qname in self._qnames(node.func):
            owner = next((o for o in _OWNERS if matches(o, qname)), owner)
        if owner is not None:
            self._keywords(owner, node)
        if isinstance(node.func, cst.Attribute):
            self._method_call(node, node.func)

    def _keywords(self, owner: str, node: cst.Call) -> None:
        if owner in ("training_arguments", "lightning_trainer"):
            self._see("training_args", node)
        rules = _KWARG_RULES.get(owner, {})
        for arg in node.args:
            if arg.keyword is None:
                continue
            key = arg.keyword.value
            value = _literal(self._code(arg.value))
            if owner in ("training_arguments", "lightning_trainer") and value is not _NOT_LITERAL:
                self.training_args.setdefault(key, value)
            for fact, predicate in rules.get(key, []):
                if predicate(value):
                    self._see(fact, arg)

    def _method_call(self, node: cst.Call, func: cst.Attribute) -> None:
        name = func.attr.value
        library = any(
            q.source.name == "IMPORT"
            for q in self.facts.qualified(func)
        )
        if name == "load_state_dict" and not library:
            self._see("load_state_dict", node)
        elif name == "eval" and not node.args and not library:
            self._see("validation", node)           # model.eval()
        elif name in ("evaluate", "validate") and not library:
            self._see("validation", node)           # trainer.evaluate(), trainer.validate()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if _EVAL_DEF.match(node.name.value):
            self._see("validation", node)


def _syntax_note(source: str, filename: str) -> str | None:
    """Python's own complaint about the source, naming the line, or None if it compiles."""
    try:
        ast.parse(source, filename=filename)
    except SyntaxError as e:
        where = f"line {e.lineno}" if e.lineno else "an unknown line"
        return f"{filename} does not parse: {e.msg} at {where}; static facts were not read"
    except ValueError as e:                           # e.g. null bytes in the source
        return f"{filename} does not parse: {e}; static facts were not read"
    return None


def static_facts_from_source(source: str, filename: str = "<string>",
                             argv: Sequence[str] | None = None) -> StaticFacts:
    """Static facts of a script given as source text.

    Args:
        source: the script's Python source.
        filename: how notes name the script.
        argv: the run's arguments after the script's name; a fact whose every place sits behind
            a flag this run left off (``if args.compile:``) is then False, with its line in
            ``inactive``. None: no run known, such a fact counts (``behind`` names the flag).
            Device conditions (``fused=torch.cuda.is_available()``) take the target GPU's branch
            (CUDA); a fact on only through one is in ``on_cuda`` too.

    Returns:
        ``StaticFacts``; ``parsed=False`` with a ``note`` naming the line when the source
        does not parse (never raises for bad source).

    Example:
        >>> f = static_facts_from_source("import torch as T\\nwith T.autocast('cuda'): pass\\n")
        >>> f.autocast, f.lines["autocast"]
        (True, 2)
    """
    note = _syntax_note(source, filename)
    if note is not None:
        return StaticFacts(parsed=False, note=note)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as e:                # valid Python that libcst cannot read
        return StaticFacts(
            parsed=False,
            note=f"{filename}: libcst cannot parse line {e.raw_line} ({e.message}); "
                 "static facts were not read",
        )
    facts = ModuleFacts(module)
    collector = _Collector(facts)
    module.visit(collector)
    lines = dict(collector.lines)
    inactive: dict[str, int] = {}
    behind: dict[str, str] = {}
    switches: dict[str, list[str]] = {}
    on_cuda: dict[str, str] = {}
    what: dict[str, str] = {}
    info = ScriptInfo(facts)
    options = script_options(info, argv)
    for fact in APPLIED_FACTS:          # what the codemods' "already applied" reads too
        a = applied(info, fact, options)
        if a.on:
            lines[fact] = a.line
            what[fact] = a.what
        elif a.off_in_run:
            inactive[fact] = a.line
            if a.switch is not None:
                switches[fact] = list(a.switch)
        if a.behind:
            behind[fact] = a.reason()
        if a.on and a.device:
            on_cuda[fact] = a.what
    lines = dict(sorted(lines.items(), key=lambda kv: (kv[1], kv[0])))
    flags = {fact: fact in lines for fact in _FACTS}
    return StaticFacts(parsed=True, training_args=collector.training_args, lines=lines, inactive=inactive,
                       behind=behind, switches=switches, on_cuda=on_cuda, what=what, **flags)


def read_static_facts(path: str | Path, argv: Sequence[str] | None = None) -> StaticFacts:
    """Read what a training script's source says about how it trains.

    Args:
        path: the script (``train.py``).
        argv: the run's arguments after the script's name (``static_facts_from_source``).

    Returns:
        ``StaticFacts`` with one boolean per fact (autocast, grad_scaler, checkpointing,
        accumulation, validation, early_stopping, from_pretrained, load_state_dict, ddp,
        fsdp, data_parallel, compile, hf_trainer, lightning, peft, tf32, fused_optimizer,
        dataloader), the literal keyword
        values of ``TrainingArguments(...)`` / Lightning ``Trainer(...)`` in
        ``training_args``, and ``lines``: fact -> first line it was seen on. A file that
        cannot be read or parsed gives ``parsed=False`` and a ``note``; nothing is raised.

    Example:
        >>> facts = read_static_facts("examples/hf_trainer.py")
        >>> facts.hf_trainer, facts.training_args["save_strategy"]
        (True, 'no')
    """
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return StaticFacts(parsed=False, note=f"cannot read {path}: {e}")
    return static_facts_from_source(source, filename=str(path), argv=argv)


def reconcile(facts: StaticFacts, seen: dict[str, bool]) -> StaticFacts:
    """The static facts corrected by what the run showed, for the facts in ``seen``.

    A fact the source has but the run did not show becomes False and moves to ``inactive``
    with its line (the advice can say "your script can do this with a flag"); a fact the run
    showed but the source did not (a library did it) becomes True.
    Example: ``reconcile(facts, {"compile": False})`` after a run with --compile=False.
    """
    changes: dict[str, object] = {}
    inactive = dict(facts.inactive)
    behind = dict(facts.behind)
    switches = dict(facts.switches)
    for fact, active in seen.items():
        if fact not in RUNTIME_FACTS:
            raise ValueError(f"{fact!r} is not observed at run time")
        if getattr(facts, fact) and not active and fact not in facts.on_cuda:   # on CUDA only: not this CPU run
            changes[fact] = False
            if fact in facts.lines:
                inactive[fact] = facts.lines[fact]
        elif active and not getattr(facts, fact):
            changes[fact] = True
            inactive.pop(fact, None)        # the run did it after all (a flag's value ccprof misread)
            behind.pop(fact, None)
            switches.pop(fact, None)
    return replace(facts, **changes, inactive=inactive, behind=behind, switches=switches) if changes else facts
