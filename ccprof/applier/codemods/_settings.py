"""Set one value of the run where the run took it from (a ``Setting`` of profile.json's ``sites``).

A value the run passed to a call (the training loader's ``batch_size``, its ``num_workers``, the
optimizer's ``lr``) came from somewhere: a literal at the call, an argparse default the command line
may override, a module global (nanoGPT's configurator overrides those from the command line too),
a field of a config object (minGPT's ``config.trainer.batch_size``, ``--trainer.batch_size=16``).
``set_value`` changes it there, and says what the run's command line must then carry, or why it
cannot (the value is written in another file of the project: ccprof rewrites only the script).

Example::

    placed = set_value(info, edits, site, setting, "32", script="train.py")
    placed.command_line     # {"--batch_size": "32"}: the run set it on its command line
    placed.where            # "the `--batch_size` default (line 12)"
    placed.refusal          # "" (else why it could not, naming the file and line to change)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import libcst as cst

from ccprof.applier.codemods._cst import Edits, code_of, kwarg, parse_expr, set_kwarg
from ccprof.applier.codemods._sites import RunSites, place
from ccprof.artefacts.profile import CallSite, Setting
from ccprof.script.flags import UNKNOWN, script_options
from ccprof.script.info import ScriptInfo
from ccprof.script.nodes import attr_chain

__all__ = ["Placed", "set_value", "statement_at", "add_argument_call"]


@dataclass(frozen=True)
class Placed:
    """How a setting was set: ``where`` (for the note), ``command_line`` ({flag: value} the run's
    command line must carry), ``edited`` (the script was changed), or ``refusal`` (why not: the
    file and line to change by hand)."""
    where: str = ""
    command_line: dict[str, str] = field(default_factory=dict)
    edited: bool = False
    refusal: str = ""

    @property
    def ok(self) -> bool:
        return not self.refusal


def set_value(info: ScriptInfo, edits: Edits, site: CallSite, setting: Setting, code: str, *,
              script: str, what: str = "the training DataLoader", argv: Sequence[str] | None = None) -> Placed:
    """Plan setting ``setting`` (of ``site``) to ``code`` where the run took it from, in ``edits``.

    kind ``argparse``: the ``add_argument`` default (found by its option string) and, when the run
    set it on its command line, that option too; ``global``: the module-level assignment (and the
    command line when the run set it there, nanoGPT-style); ``attribute``: the command line when
    the run set it there, else ``path = code`` just before the statement of the script the run was
    at when it built the object (``scope_line``); ``literal`` / ``default`` / ``local``: the call's
    keyword or the assignment, in the script; the keyword of the script's call of a factory that
    passes it on (``get_dataloader(ds, batch_size=64)``). A parameter of a function in another file
    that the script holds as an option of its own, by the same name and with the same value in the
    run (``argv``: nanoGPT's ``batch_size`` global handed through ``partial(Task.iter_batches,
    batch_size=batch_size)``), is set as that option. Written in another file: a refusal that names
    the file, the line and what to change there.
    """
    if setting.kind == "local" and not RunSites.in_script(setting.file or site.file, script):
        setting = _as_script_option(info, setting, argv) or setting
    given = {setting.flag: code} if setting.flag and setting.argv else {}
    kind = setting.kind
    if kind == "argparse":
        call = add_argument_call(info, setting.flag, setting.path)
        if call is not None:
            edits.replace(call, lambda u: set_kwarg(u, "default", code))
            return Placed(f"the `{_option_of(call) or setting.flag}` default (line {info.line(call)})"
                          + (" and the run's command line" if given else ""), given, True)
        if setting.flag:
            return Placed(f"`{setting.flag}` on the run's command line", {setting.flag: code})
    elif kind == "global":
        assign = _module_assign(info, setting.path or setting.name) \
            if not setting.file or RunSites.in_script(setting.file, script) else None
        if assign is not None:
            edits.replace(assign, lambda u: u.with_changes(value=parse_expr(code)))
            return Placed(f"`{code_of(assign.targets[0].target).strip()} = ...` (line {info.line(assign)})"
                          + (" and the run's command line" if given else ""), given, True)
        if given:
            return Placed(f"`{setting.flag}` on the run's command line", given)
    elif kind == "attribute":
        if given:
            return Placed(f"`{setting.flag}` on the run's command line", given)
        assign = _literal_assign(info, setting.line) if RunSites.in_script(setting.file, script) else None
        if assign is not None:          # the config's own `C.batch_size = 64`, in the script
            edits.replace(assign, lambda u: u.with_changes(value=parse_expr(code)))
            return Placed(f"`{code_of(assign.targets[0].target).strip()} = ...` (line {info.line(assign)})", {}, True)
        if setting.path and setting.scope_line and RunSites.in_script(setting.scope_file, script):
            stmt = statement_at(info, setting.scope_line)
            if stmt is not None:
                new = f"{setting.path} = {code}"
                if _previous_is(info, stmt, new):         # a second pass: already there
                    return Placed(f"`{new}` before line {setting.scope_line}")
                edits.insert_before(stmt, [cst.parse_statement(new + "\n").with_changes(
                    leading_lines=list(getattr(stmt, "leading_lines", ())))])
                if getattr(stmt, "leading_lines", ()):      # the comments above stay above the new line
                    edits.replace(stmt, lambda u: u.with_changes(leading_lines=[]))
                return Placed(f"`{new}` before line {setting.scope_line}", {}, True)
    elif kind in ("literal", "default", "local"):
        placed = _at_call(info, edits, site, setting, code, script)
        if placed is not None:
            return placed
    if setting.flag:                # an option the script's parser or configurator reads
        return Placed(f"`{setting.flag}` on the run's command line", {setting.flag: code})
    return Placed(refusal=_elsewhere(site, setting, code, what, script))


def _as_script_option(info: ScriptInfo, setting: Setting, argv: Sequence[str] | None) -> Setting | None:
    """``setting`` (a function's variable in another file) as the script's own option of the same
    name whose value in the run is the same: a nanoGPT config global or an argparse option."""
    name = (setting.path or setting.code or setting.name).rsplit(".", 1)[-1]
    options = script_options(info, list(argv or []))
    value = options.value(name)
    if value is UNKNOWN or value != setting.value or isinstance(value, bool) != isinstance(setting.value, bool):
        return None
    if name in options.config:
        kind, flag, path = "global", options.config[name], name
    elif name in options.dests and options.namespaces:
        kind, flag, path = "argparse", options.dests[name], f"{sorted(options.namespaces)[0]}.{name}"
    else:
        return None
    given = next((a for a in (argv or []) if a == flag or a.startswith(flag + "=")), "")
    return replace(setting, kind=kind, path=path, flag=flag, argv=given, file="", line=0)


def add_argument_call(info: ScriptInfo, flag: str, path: str = "") -> cst.Call | None:
    """The script's ``add_argument`` call with option string ``flag`` (``"--bs"``), else the one
    whose ``dest`` is the last part of ``path`` (``args.batch_size``); None when the script has none."""
    dest = path.rsplit(".", 1)[-1] if path else ""
    for call in info.method_calls("add_argument"):
        names = [a.value.evaluated_value for a in call.args
                 if a.keyword is None and isinstance(a.value, cst.SimpleString)]
        if flag and flag in names:
            return call
        given = kwarg(call, "dest")
        if dest and (given is not None and isinstance(given.value, cst.SimpleString)
                     and given.value.evaluated_value == dest
                     or given is None and any(n.lstrip("-").replace("-", "_") == dest for n in names
                                              if n.startswith("--"))):
            return call
    return None


def statement_at(info: ScriptInfo, line: int) -> cst.BaseStatement | None:
    """The statement of a block that starts at ``line`` (the outermost one, a ``for`` rather than
    its body's first line)."""
    for node in info.facts.nodes:
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)) and \
                isinstance(info.parent(node), (cst.Module, cst.IndentedBlock)) and _start(info, node) == line:
            return node
    return None


def _start(info: ScriptInfo, stmt: cst.CSTNode) -> int:
    """The statement's own first line (not the blank and comment lines above it)."""
    return info.line(stmt)


def _previous_is(info: ScriptInfo, stmt: cst.CSTNode, code: str) -> bool:
    """Whether the assignments just above ``stmt`` already hold ``code`` (a second pass)."""
    block = info.block_of(stmt)
    if block is None:
        return False
    body = list(block.body)
    i = next((k for k, s in enumerate(body) if s is stmt), 0)
    while i > 0 and isinstance(body[i - 1], cst.SimpleStatementLine) and \
            isinstance(body[i - 1].body[0], cst.Assign):
        i -= 1
        if code_of(body[i].body[0]).strip() == code:
            return True
    return False


def _option_of(call: cst.Call) -> str:
    names = [a.value.evaluated_value for a in call.args if a.keyword is None and isinstance(a.value, cst.SimpleString)]
    return next((n for n in names if n.startswith("--")), names[0] if names else "")


def _module_assign(info: ScriptInfo, name: str) -> cst.Assign | None:
    """The one module-level ``name = ...`` (a ``__main__`` block counts as module level)."""
    found = []
    for stmt in info.module.body:
        stmts = stmt.body.body if isinstance(stmt, cst.If) and "__main__" in code_of(stmt.test) else [stmt]
        for s in stmts:
            if isinstance(s, cst.SimpleStatementLine):
                found += [a for a in s.body if isinstance(a, cst.Assign) and len(a.targets) == 1
                          and attr_chain(a.targets[0].target) == name]
    return found[0] if len(found) == 1 else None


def _literal_assign(info: ScriptInfo, line: int) -> cst.Assign | None:
    """The ``x.y = <literal>`` assignment at ``line``."""
    for assign in info.assigns():
        if info.line(assign) == line and len(assign.targets) == 1 and _is_literal(assign.value):
            return assign
    return None


def _calls_at(info: ScriptInfo, line: int) -> list[cst.Call]:
    """The calls whose source spans ``line``, innermost first."""
    out = [c for c in info.calls if info.line(c) <= line <= info.line(c) + code_of(c).count("\n")]
    return sorted(out, key=lambda c: len(code_of(c)))


def _at_call(info: ScriptInfo, edits: Edits, site: CallSite, setting: Setting, code: str,
             script: str) -> Placed | None:
    """A literal, a default or a local value written in the script: at the call, the assignment,
    or the keyword of the script's call that handed it to a factory in another file."""
    key = setting.name
    if RunSites.in_script(setting.file or site.file, script):
        line = setting.line or site.line
        if setting.kind == "local":
            name = setting.path or setting.name
            for assign in info.assigns():
                if info.line(assign) == line and len(assign.targets) == 1 and \
                        attr_chain(assign.targets[0].target) == name:
                    edits.replace(assign, lambda u: u.with_changes(value=parse_expr(code)))
                    return Placed(f"`{name} = ...` (line {line})", {}, True)
            return None
        calls = [c for c in _calls_at(info, line) if kwarg(c, key) is not None] if setting.kind == "literal" \
            else [c for c in _calls_at(info, line) if site.cls.rsplit(".", 1)[-1] in code_of(c.func)]
        if calls:
            edits.replace(calls[0], lambda u: set_kwarg(u, key, code))
            return Placed(f"`{key}=` (line {info.line(calls[0])})", {}, True)
        return None
    # a factory of another file: the script's own call that handed the value on as a keyword
    names = {key, setting.path.rsplit(".", 1)[-1]} if setting.path else {key}
    for file, line, *_ in site.stack:
        if not RunSites.in_script(str(file), script):
            continue
        for call in _calls_at(info, int(line)):
            arg = next((kwarg(call, n) for n in names if kwarg(call, n) is not None), None)
            if arg is not None and _is_literal(arg.value):
                edits.replace(call, lambda u, k=arg.keyword.value: set_kwarg(u, k, code))
                return Placed(f"`{arg.keyword.value}=` of `{code_of(call.func).strip()}(...)` (line {info.line(call)})",
                              {}, True)
    return None


def _is_literal(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        expr = expr.expression
    return isinstance(expr, (cst.Integer, cst.Float, cst.Name)) and (
        not isinstance(expr, cst.Name) or expr.value in ("True", "False", "None"))


def _elsewhere(site: CallSite, setting: Setting, code: str, what: str, script: str) -> str:
    """Why the value cannot be set from the script: where it is (relative to the script's folder),
    and what to change there."""
    file, line = (setting.file, setting.line) if setting.file and setting.line else (site.file, site.line)
    where = place(file, line, script)
    if setting.kind == "default" or not setting.code:
        return (f"{what} at {where} has no setting for {setting.name}; add {setting.name}={code} there "
                "(ccprof rewrites only the script)")
    source = f" (from `{setting.path}`)" if setting.path and setting.path != setting.code else ""
    return (f"{what} is built at {where} with `{setting.name}={setting.code}`{source}: set it to {code} there, "
            "ccprof rewrites only the script" + (f", or pass {setting.flag}={code}" if setting.flag else ""))
