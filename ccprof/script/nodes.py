"""Read-only helpers on libcst nodes, shared by every reader of a script (``ScriptInfo``, the
loop and fact readers of ``ccprof.script``, and the codemods): names, keywords, calls, the
names a statement binds. Nothing here builds or changes a node."""
from __future__ import annotations

import re
from typing import Iterable

import libcst as cst

__all__ = ["FUSED_CAPABLE", "VAL_LOSS_NAME", "last_part", "code_of", "kwarg", "kwarg_code", "call_names",
           "names_in", "assigned_names", "binds", "attr_chain", "method_call", "expr_stmt_call"]

FUSED_CAPABLE = ("SGD", "Adam", "AdamW", "Adagrad")          # torch.optim classes with fused=
VAL_LOSS_NAME = re.compile(r"^(val|valid|validation|eval|dev|test)_?(loss|losses)$", re.I)


def last_part(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def code_of(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def kwarg(call: cst.Call, name: str) -> cst.Arg | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def kwarg_code(call: cst.Call, name: str) -> str | None:
    arg = kwarg(call, name)
    return None if arg is None else code_of(arg.value).strip()


def call_names(node: cst.CSTNode) -> Iterable[cst.Call]:
    """Every Call inside ``node`` (including itself)."""
    found: list[cst.Call] = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            found.append(n)

    node.visit(_V())
    return found


def names_in(node: cst.CSTNode) -> set[str]:
    found: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            found.add(n.value)

    node.visit(_V())
    return found


def assigned_names(stmt: cst.CSTNode) -> set[str]:
    """Names bound by the assignments of a simple statement line (``a, b = ...``, ``a += ...``)."""
    out: set[str] = set()
    if not isinstance(stmt, cst.SimpleStatementLine):
        return out
    for small in stmt.body:
        targets: list[cst.BaseExpression] = []
        if isinstance(small, cst.Assign):
            targets = [t.target for t in small.targets]
        elif isinstance(small, (cst.AnnAssign, cst.AugAssign)):
            targets = [small.target]
        for t in targets:
            _collect_targets(t, out)
    return out


def binds(stmt: cst.CSTNode) -> set[str]:
    """Names one statement binds itself: its assignments, a ``for`` target, ``with ... as x``."""
    out = set(assigned_names(stmt))
    if isinstance(stmt, cst.For):
        _collect_targets(stmt.target, out)
    if isinstance(stmt, cst.With):
        for item in stmt.items:
            if item.asname is not None:
                _collect_targets(item.asname.name, out)
    return out


def _collect_targets(t: cst.BaseExpression, out: set[str]) -> None:
    if isinstance(t, cst.Name):
        out.add(t.value)
    elif isinstance(t, (cst.Tuple, cst.List)):
        for el in t.elements:
            _collect_targets(el.value, out)
    elif isinstance(t, cst.StarredElement):
        _collect_targets(t.value, out)


def attr_chain(node: cst.BaseExpression) -> str | None:
    """``self.model.layers`` -> "self.model.layers"; None for anything but names and attributes."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = attr_chain(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    return None


def method_call(node: cst.CSTNode, method: str) -> cst.Call | None:
    """The call when ``node`` is ``<receiver>.<method>(...)``."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == method:
        return node
    return None


def expr_stmt_call(stmt: cst.CSTNode) -> cst.Call | None:
    """The call of a statement line that is just ``f(...)``."""
    if (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1
            and isinstance(stmt.body[0], cst.Expr) and isinstance(stmt.body[0].value, cst.Call)):
        return stmt.body[0].value
    return None
