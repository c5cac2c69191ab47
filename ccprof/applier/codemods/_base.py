"""The codemods' base class and the import helpers; ``_cst.py`` holds the node helpers and the
one-pass ``Edits`` plan, ``_script.py`` what a script says (``ScriptInfo``).

A codemod reads the script through ``ScriptInfo`` (qualified names, so ``import torch as T``
and ``from torch import optim`` match ``torch.optim.AdamW``), records its changes in an
``Edits`` plan keyed by the original nodes, and the plan is applied in one pass. A codemod
that finds nothing to change raises ``Skip`` (with the line it looked for) or
``AlreadyApplied``; either way the script is returned untouched.
"""
from __future__ import annotations

import shlex
from typing import Any, ClassVar, Sequence

import libcst as cst
import libcst.matchers as m
from libcst.codemod import CodemodCommand, CodemodContext
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor

from ccprof.applier.codemods._cst import Edits
from ccprof.applier.codemods._sites import RunSites
from ccprof.artefacts.tweaks import TWEAKS, TweakOptions, options_for
from ccprof.script.applied import applied
from ccprof.script.facts import ModuleFacts
from ccprof.script.flags import script_options, with_option
from ccprof.script.info import ScriptInfo


class Skip(Exception):
    """The pattern a codemod needs is not in the script; the message names what it looked for."""


class AlreadyApplied(Exception):
    """The script already has the tweak; the message names the line that shows it."""


class TurnOn(AlreadyApplied):
    """The script has the tweak behind an option the run left off: nothing to write; the message
    gives the run's arguments with the option on (``argv``)."""

    def __init__(self, message: str, argv: list[str]) -> None:
        super().__init__(message)
        self.argv = argv


# --------------------------------------------------------------------------- base class


class TweakCodemod(CodemodCommand):
    """One tweak's rewrite. Subclasses set ``tweak`` and implement ``plan(info, edits)``.

    ``plan`` records changes in ``edits``, adds imports with ``self.need_import``, and raises
    ``Skip`` or ``AlreadyApplied`` instead of changing nothing silently.
    """

    tweak: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    # In a Hugging Face Accelerate script: "code" (edit the code as in a plain loop: workers, TF32,
    # compile, checkpointing, the loader's batch size are not Accelerator settings), "accelerator"
    # (the setting belongs to ``Accelerator(...)``: the codemod's ``plan`` puts it there), or the
    # reason the rewrite does not apply, naming what the user should do instead.
    ACCELERATE: ClassVar[str] = "code"
    # No libcst metadata providers: ``ScriptInfo`` reads a ``ModuleFacts`` (parents, lines,
    # qualified names), which ``apply_source`` shares between the tweaks of one module version.
    METADATA_DEPENDENCIES = ()

    def __init__(self, context: CodemodContext, options: TweakOptions | dict[str, Any] | None = None,
                 argv: Sequence[str] | None = None, sites: Sequence[Any] = ()) -> None:
        super().__init__(context)
        # the arguments of the run the advice came from (None: not known); they tell whether a
        # block behind a flag (`if args.compile:`) was in effect
        self.argv = None if argv is None else list(argv)
        # where the run built the loader, optimizer and models and took each value from (profile.json's
        # ``sites``; empty without a profile): a value is changed where the run read it
        self.run = RunSites(sites)
        # options the run's command line must carry for the rewrite to take effect ({"--batch_size": "32"}):
        # the run sets that value on its command line, which a new default would not reach
        self.command_line: dict[str, str | None] = {}
        # the tweak's typed options (ccprof.artefacts.tweaks); a field left None takes the
        # codemod's default, given where it is read
        self.options = options_for(self.tweak, options)
        self.notes: list[str] = []
        self.read: set[str] = set()         # the option fields this rewrite looked at

    def plan(self, info: ScriptInfo, edits: Edits) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def rewrite(self, facts: ModuleFacts) -> cst.Module:
        """The module of ``facts`` with this tweak, imports included; raises ``Skip`` or
        ``AlreadyApplied``. Unchanged subtrees are shared with ``facts.module``."""
        info = ScriptInfo(facts)
        self.check_applied(info)
        if info.uses_accelerate() and self.ACCELERATE not in ("code", "accelerator"):
            raise Skip(self.ACCELERATE)
        edits = Edits()
        self.plan(info, edits)
        if not edits and self.command_line and self.argv is not None:
            argv = list(self.argv)
            for flag, value in self.command_line.items():
                argv = with_option(argv, flag, value)
            raise TurnOn("nothing to change in the script: the run sets it on its command line; run the script "
                         f"with `{shlex.join(argv)}`" + (f" ({'; '.join(self.notes)})" if self.notes else ""), argv)
        if not edits:
            raise AlreadyApplied("nothing to change")
        tree = edits.apply(facts.module, facts.parent)
        if AddImportsVisitor.CONTEXT_KEY in self.context.scratch:
            tree = add_needed_imports(self.context, tree)
        if RemoveImportsVisitor.CONTEXT_KEY in self.context.scratch:   # no codemod asks for it yet
            tree = RemoveImportsVisitor(self.context).transform_module(tree)
        return tree

    def check_applied(self, info: ScriptInfo) -> None:
        """``AlreadyApplied`` when one of the tweak's facts (the catalog's ``TweakInfo.facts``) is in
        effect (behind a flag whose value the run does not tell: still, saying so); ``Skip`` when the script has it only
        behind a flag the run left off (a second copy would fight the first)."""
        facts = TWEAKS[self.tweak].facts     # the catalog's: what analyze's static facts read too
        if not facts:
            return
        options = script_options(info, self.argv)
        found = [applied(info, fact, options) for fact in facts]
        for a in found:
            if a.on:
                raise AlreadyApplied(a.reason())
        for a in found:
            if a.off_in_run and a.switch is not None:
                raise TurnOn(f"in the script, off in the run the advice came from: {a.reason()}; turn it on "
                             f"rather than adding a second one: run the script with `{shlex.join(a.switch)}`",
                             list(a.switch))
        for a in found:
            if a.off_in_run:
                raise Skip(f"not in effect in the run the advice came from: {a.reason()}; turn "
                           f"{' / '.join(a.flags) or 'that flag'} on to use it rather than adding a second one")

    def transform_module(self, tree: cst.Module) -> cst.Module:
        """libcst's entry point (a whole-module pass per metadata provider) replaced by
        ``rewrite`` on the facts of ``tree``."""
        return self.rewrite(ModuleFacts(tree))

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        return self.rewrite(ModuleFacts(tree))

    def need_import(self, module: str, obj: str | None = None, asname: str | None = None) -> None:
        AddImportsVisitor.add_needed_import(self.context, module, obj, asname)

    def opt(self, name: str) -> Any:
        """Option field ``name`` of this tweak: as set, else the catalog's one default for it
        (``TweakOptions.value``; None where the rewrite decides from the script)."""
        self.read.add(name)
        return self.options.value(name)


def after_imports_anchor(module: cst.Module) -> cst.BaseStatement | None:
    """The last statement of the module's opening run of docstring, imports and try-imports."""
    anchor = None
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine) and all(
                isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body):
            anchor = stmt
            continue
        if isinstance(stmt, cst.SimpleStatementLine) and anchor is None and m.matches(
                stmt, m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString() | m.ConcatenatedString())])):
            anchor = stmt
            continue
        if isinstance(stmt, cst.Try) and all(
                isinstance(s, cst.SimpleStatementLine) and all(isinstance(x, (cst.Import, cst.ImportFrom)) for x in s.body)
                for s in stmt.body.body):
            anchor = stmt
            continue
        break
    return anchor


def insert_after_imports(info: ScriptInfo, edits: Edits, stmts: list[cst.BaseStatement]) -> None:
    """Put ``stmts`` after the script's imports (a blank line before them)."""
    anchor = after_imports_anchor(info.module)
    if stmts:
        stmts = [stmts[0].with_changes(leading_lines=[cst.EmptyLine(), *stmts[0].leading_lines])] + list(stmts[1:])
    if anchor is None:
        first = info.module.body[0] if info.module.body else None
        if first is None:
            raise Skip("the script is empty")
        edits.insert_before(first, stmts)
    else:
        edits.insert_after(anchor, stmts)


def _is_import_line(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(
        stmt.body[0], (cst.Import, cst.ImportFrom))


def add_needed_imports(context: CodemodContext, module: cst.Module) -> cst.Module:
    """What ``AddImportsVisitor`` does to ``module``, run on its head only.

    The visitor reads and changes only the module's opening run of statements (a docstring,
    the imports) and the first statement after them (a blank line before it), so it runs on a
    module of those statements, compound ones stubbed, and the rest is spliced back. On a long
    script that saves two whole-tree passes and a deep copy, and the visitor's recursive
    pattern match over the whole body (a RecursionError past ~1,000 top-level statements).
    """
    body = list(module.body)
    head: list[cst.BaseStatement] = []
    stubs: dict[str, cst.BaseStatement] = {}
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.SimpleStatementLine):
            head.append(stmt)
        else:                       # a def/class/loop: a one-line stand-in with its leading lines
            name = f"__ccprof_stub_{i}__"
            stubs[name] = stmt
            head.append(cst.SimpleStatementLine(body=[cst.Expr(cst.Name(name))], leading_lines=stmt.leading_lines))
        if i >= 1 and not _is_import_line(stmt) or i == 0 and not isinstance(stmt, cst.SimpleStatementLine):
            break
    rest = body[len(head):]
    stub = module.with_changes(body=head)
    new_head = AddImportsVisitor(context).transform_module(stub)
    if new_head.deep_equals(stub):
        return module                   # every import is there already
    out: list[cst.BaseStatement] = []
    for stmt in new_head.body:
        name = _stub_name(stmt)
        if name in stubs:
            orig = stubs[name]
            lines = stmt.leading_lines
            same = len(lines) == len(orig.leading_lines) and all(
                a.deep_equals(b) for a, b in zip(lines, orig.leading_lines))
            stmt = orig if same else orig.with_changes(leading_lines=lines)
        out.append(stmt)
    return module.with_changes(body=[*out, *rest])


def _stub_name(stmt: cst.CSTNode) -> str | None:
    if (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr)
            and isinstance(stmt.body[0].value, cst.Name)):
        return stmt.body[0].value.value
    return None
