"""What the script asserts on a value a rewrite changes.

A script often derives values from its batch size and checks them: llm.c's
``B, T = args.batch_size, args.sequence_length; tokens_per_fwdbwd = B * T * ddp_world_size;
assert args.total_batch_size % tokens_per_fwdbwd == 0``. A new batch size that breaks such an
assert stops the run at its first line. This module finds the names derived from a changed value
(assigned from expressions that use it, transitively, in the scope of the assert), the asserts
that read any of them, and evaluates each with the values the run knows (the command line, the
argparse defaults, the script's literals) before and after the change.

The script's statements are followed in order, taking the branch of an ``if`` whose condition
is known (``if ddp:`` with ``ddp = int(os.environ.get("RANK", -1)) != -1``), for one process
started as ``python script.py`` (``ONE_PROCESS``: no launcher variables set).

Example::

    found = asserts_on(info, "batch_size", options, 32)
    found[0].line, found[0].after     # 41, False: 8192 % (32 * 1024 * 1) != 0
    found[0].multiple                 # Multiple(name="total_batch_size", ...): raise it to a multiple
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable

import libcst as cst

from ccprof.script.flags import UNKNOWN, Options, _value
from ccprof.script.info import ScriptInfo
from ccprof.script.nodes import attr_chain, code_of

__all__ = ["ONE_PROCESS", "Multiple", "Invariant", "asserts_on", "dependents"]

# the environment of `python script.py`: none of torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK)
ONE_PROCESS: dict[str, str] = {}


@dataclass(frozen=True)
class Multiple:
    """``assert total % per_step == 0`` where ``total`` is a setting of its own: the smallest
    multiple of ``per_step`` (after the change) at or above ``total`` keeps the assert true.
    name: the setting (an argparse dest or a module global); code: how the assert reads it."""
    name: str
    code: str
    old: int
    new: int
    per_step: int


@dataclass(frozen=True)
class Invariant:
    """An assert that reads the changed value or one derived from it, evaluated in the run
    (``before``) and with the new value (``after``): True, False or None (not computable)."""
    line: int
    code: str
    before: bool | None
    after: bool | None
    multiple: Multiple | None = None

    def quote(self) -> str:
        return f"`{self.code}` (line {self.line})"


def dependents(scope: cst.CSTNode, changed: Iterable[str]) -> set[str]:
    """Names ``scope`` assigns from expressions that use one of ``changed`` (names or attribute
    chains: ``args.batch_size``) or a name so derived, transitively."""
    chains = set(changed)
    assigns = _assigns(scope)
    grew = True
    while grew:
        grew = False
        for targets, value in assigns:
            if _reads(value, chains) and not targets <= chains:
                chains |= targets
                grew = True
    return chains - set(changed)


def asserts_on(info: ScriptInfo, changed: str, options: Options, new: Any, *, dest: str = "") -> list[Invariant]:
    """The asserts of the script that read ``changed`` (a module-level name, or an argparse
    option read as ``<namespace>.<dest>``: pass ``dest``) or a value derived from it, each
    evaluated with the run's values and with ``new``. ``options``: ``script_options(info, argv)``."""
    chains = {changed} | ({f"{ns}.{dest}" for ns in options.namespaces} if dest else set())
    out = []
    for node in info.facts.of_type(cst.Assert):
        scope = info.func_of(node) or info.module
        names = chains | dependents(scope, chains)
        if not _reads(node.test, names):
            continue
        before_opts = _in_order(info, scope, node, options)
        after_opts = _changed(before_opts, changed, dest, new)
        before, after = _truth(node.test, before_opts), _truth(node.test, after_opts)
        multiple = _multiple(node.test, before_opts, after_opts, names) if after is not None else None
        out.append(Invariant(info.line(node), code_of(node).strip(), before, after, multiple))
    return out


def _assigns(scope: cst.CSTNode) -> list[tuple[set[str], cst.BaseExpression]]:
    out: list[tuple[set[str], cst.BaseExpression]] = []

    class _V(cst.CSTVisitor):
        def visit_FunctionDef(self, n: cst.FunctionDef) -> bool:
            return n is scope

        def visit_ClassDef(self, n: cst.ClassDef) -> bool:
            return False

        def visit_Assign(self, n: cst.Assign) -> None:
            for t in n.targets:
                if isinstance(t.target, (cst.Tuple, cst.List)) and isinstance(n.value, (cst.Tuple, cst.List)) \
                        and len(t.target.elements) == len(n.value.elements):
                    for te, ve in zip(t.target.elements, n.value.elements):
                        chain = attr_chain(te.value)
                        if chain:
                            out.append(({chain}, ve.value))
                else:
                    names = {c for c in _target_chains(t.target)}
                    if names:
                        out.append((names, n.value))

        def visit_AugAssign(self, n: cst.AugAssign) -> None:
            chain = attr_chain(n.target)
            if chain:
                out.append(({chain}, n.value))

    scope.visit(_V())
    return out


def _target_chains(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, (cst.Tuple, cst.List)):
        return [c for e in target.elements for c in _target_chains(e.value)]
    chain = attr_chain(target)
    return [chain] if chain else []


def _reads(expr: cst.CSTNode, chains: set[str]) -> bool:
    """Whether ``expr`` reads one of ``chains`` (a name, or an attribute chain as a whole)."""
    found = False

    class _V(cst.CSTVisitor):
        def visit_Attribute(self, n: cst.Attribute) -> bool:
            nonlocal found
            if attr_chain(n) in chains:
                found = True
            return True

        def visit_Name(self, n: cst.Name) -> None:
            nonlocal found
            if n.value in chains:
                found = True

    expr.visit(_V())
    return found


def _in_order(info: ScriptInfo, scope: cst.CSTNode, stop: cst.CSTNode, options: Options) -> Options:
    """``options`` with the bindings the script holds when it reaches ``stop``: its statements
    in order, the taken branch of each ``if`` whose condition is known (one process)."""
    env: dict[str, cst.BaseExpression] = dict(options.bindings)
    env["__name__"] = cst.SimpleString('"__main__"')
    opts = replace(options, environ=ONE_PROCESS)
    body = scope.body.body if isinstance(scope, cst.FunctionDef) else scope.body
    try:
        _walk(list(body), env, opts, stop)
    except _Stop:
        pass
    return replace(opts, bindings=env)


class _Stop(Exception):
    pass


def _walk(stmts: list, env: dict, opts: Options, stop: cst.CSTNode) -> None:
    for stmt in stmts:
        if stmt is stop or (isinstance(stmt, cst.SimpleStatementLine) and any(s is stop for s in stmt.body)):
            raise _Stop
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                _bind(small, env)
        elif isinstance(stmt, cst.If):
            _branch(stmt, env, opts, stop)
        elif isinstance(stmt, (cst.For, cst.While, cst.With, cst.Try)):
            if isinstance(stmt, cst.For):
                for name in _target_chains(stmt.target):
                    env.pop(name, None)
            _walk(list(stmt.body.body), env, opts, stop)


def _branch(stmt: cst.If, env: dict, opts: Options, stop: cst.CSTNode) -> None:
    test = _value(stmt.test, replace(opts, bindings=env))
    orelse = stmt.orelse
    other = (list(orelse.body.body) if isinstance(orelse, cst.Else) else [orelse]) if orelse is not None else []
    if test is not UNKNOWN:
        _walk(list(stmt.body.body) if test else other, env, opts, stop)
        return
    a, b = dict(env), dict(env)
    stopped = None
    for branch, target in ((list(stmt.body.body), a), (other, b)):
        try:
            _walk(branch, target, opts, stop)
        except _Stop:
            stopped = target
    if stopped is not None:         # the assert is in one branch: that branch was taken
        env.clear()
        env.update(stopped)
        raise _Stop
    for name in set(a) | set(b):    # known after the `if` only when both branches agree
        if name in a and name in b and code_of(a[name]) == code_of(b[name]):
            env[name] = a[name]
        else:
            env.pop(name, None)


def _bind(small: cst.BaseSmallStatement, env: dict) -> None:
    if isinstance(small, cst.Assign):
        for t in small.targets:
            if isinstance(t.target, (cst.Tuple, cst.List)) and isinstance(small.value, (cst.Tuple, cst.List)) \
                    and len(t.target.elements) == len(small.value.elements):
                for te, ve in zip(t.target.elements, small.value.elements):
                    if isinstance(te.value, cst.Name):
                        env[te.value.value] = ve.value
                continue
            for name in _target_chains(t.target):
                env.pop(name, None)
            if isinstance(t.target, cst.Name):
                env[t.target.value] = small.value
    elif isinstance(small, (cst.AugAssign, cst.AnnAssign)):
        for name in _target_chains(small.target):
            env.pop(name, None)
        if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) and small.value is not None:
            env[small.target.value] = small.value


def _changed(options: Options, changed: str, dest: str, new: Any) -> Options:
    """``options`` with the changed value set to ``new``."""
    values = dict(options.values or {})
    if dest:
        values[dest] = new
    if changed in options.config:
        values[changed] = new
    bindings = dict(options.bindings)
    if not dest and changed not in options.config:
        bindings[changed] = cst.parse_expression(repr(new))
    return replace(options, values=values, bindings=bindings)


def _truth(test: cst.BaseExpression, options: Options) -> bool | None:
    value = _value(test, options)
    if value is UNKNOWN:
        return None
    try:
        return bool(value)
    except Exception:
        return None


def _multiple(test: cst.BaseExpression, before: Options, after: Options, derived: set[str]) -> Multiple | None:
    """``total % per_step == 0`` with ``total`` a setting of its own (not derived from the change):
    the next multiple of ``per_step`` at or above ``total``."""
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1
            and isinstance(test.comparisons[0].operator, cst.Equal)
            and _value(test.comparisons[0].comparator, after) == 0
            and isinstance(test.left, cst.BinaryOperation) and isinstance(test.left.operator, cst.Modulo)):
        return None
    total, per_step = test.left.left, test.left.right
    chain = attr_chain(total)
    if chain is None or _reads(total, derived):
        return None
    old, step = _value(total, before), _value(per_step, after)
    if not (isinstance(old, int) and isinstance(step, int)) or step <= 0 or old <= 0:
        return None
    return Multiple(chain.rsplit(".", 1)[-1], chain, old, math.ceil(old / step) * step, step)
