"""libcst helpers the codemods share: name constants, the one-pass ``Edits`` plan, and small
readers and builders of nodes (``kwarg``, ``set_kwarg``, ``parse_stmts``, ``assigned_names`` ...)."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

import libcst as cst

__all__ = ["FUSED_CAPABLE", "VAL_LOSS_NAME", "last_part", "Edits", "parse_stmts", "parse_expr",
           "code_of", "kwarg", "kwarg_code", "append_arg", "set_kwarg", "call_names", "names_in",
           "assigned_names", "binds", "attr_chain", "method_call", "expr_stmt_call"]

# --------------------------------------------------------------------------- names

FUSED_CAPABLE = ("SGD", "Adam", "AdamW", "Adagrad")          # torch.optim classes with fused=
VAL_LOSS_NAME = re.compile(r"^(val|valid|validation|eval|dev|test)_?(loss|losses)$", re.I)


def last_part(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- edits


class Edits(cst.CSTTransformer):
    """A plan of changes keyed by original nodes, applied in one pass.

    ``replace(node, fn)``: fn(updated) -> new node (one for one).
    ``insert_before/after(stmt, stmts)``: new statements beside a statement of a block.
    ``remove(stmt)``; ``group(stmts, fn)``: contiguous statements of one block -> fn(updated list).
    ``apply(module, parent)`` runs the plan visiting only the paths to the edited nodes;
    ``module.visit(edits)`` visits everything (the same result, slower).
    """

    def __init__(self) -> None:
        super().__init__()
        self._replace: dict[int, Callable[[Any], Any]] = {}
        self._before: dict[int, list[cst.BaseStatement]] = defaultdict(list)
        self._after: dict[int, list[cst.BaseStatement]] = defaultdict(list)
        self._remove: set[int] = set()
        self._groups: dict[int, tuple[list[int], Callable[[list], cst.BaseStatement]]] = {}
        self._grouped: set[int] = set()
        self._keep: list[Any] = []           # keep originals alive so ids stay unique
        self._above: set[int] | None = None  # ids of the nodes holding an edited node (apply)

    def __bool__(self) -> bool:
        return bool(self._replace or self._before or self._after or self._remove or self._groups)

    def apply(self, module: cst.Module, parent: Callable[[cst.CSTNode], cst.CSTNode | None]) -> cst.Module:
        """``module`` with the plan applied, visiting only the nodes that hold an edited node:
        every other subtree is kept as the same object (so the new module shares it)."""
        above: set[int] = set()
        for node in self._keep:
            p = parent(node)
            while p is not None and id(p) not in above:
                above.add(id(p))
                p = parent(p)
        self._above = above
        try:
            return module.visit(self)
        finally:
            self._above = None

    def on_visit(self, node):  # type: ignore[override]
        return self._above is None or id(node) in self._above

    def replace(self, node: cst.CSTNode, fn: Callable[[Any], Any]) -> None:
        self._keep.append(node)
        old = self._replace.get(id(node))
        self._replace[id(node)] = fn if old is None else (lambda u, a=old, b=fn: b(a(u)))

    def insert_before(self, stmt: cst.CSTNode, stmts: Sequence[cst.BaseStatement]) -> None:
        self._keep.append(stmt)
        self._before[id(stmt)].extend(stmts)

    def insert_after(self, stmt: cst.CSTNode, stmts: Sequence[cst.BaseStatement]) -> None:
        self._keep.append(stmt)
        self._after[id(stmt)].extend(stmts)

    def remove(self, stmt: cst.CSTNode) -> None:
        self._keep.append(stmt)
        self._remove.add(id(stmt))

    def group(self, stmts: Sequence[cst.CSTNode], fn: Callable[[list], cst.BaseStatement]) -> None:
        self._keep.extend(stmts)
        ids = [id(s) for s in stmts]
        self._groups[ids[0]] = (ids, fn)
        self._grouped.update(ids[1:])

    def on_leave(self, original_node, updated_node):  # type: ignore[override]
        fn = self._replace.get(id(original_node))
        if fn is not None:
            updated_node = fn(updated_node)
        if isinstance(original_node, (cst.Module, cst.IndentedBlock)) and isinstance(
                updated_node, (cst.Module, cst.IndentedBlock)) and self._touches(original_node.body):
            updated_node = updated_node.with_changes(
                body=self._rebuild(original_node.body, updated_node.body))
        return updated_node

    def _touches(self, body: Sequence[cst.CSTNode]) -> bool:
        return any(id(s) in self._before or id(s) in self._after or id(s) in self._remove
                   or id(s) in self._groups or id(s) in self._grouped for s in body)

    def _rebuild(self, originals: Sequence[cst.CSTNode], updated: Sequence[cst.CSTNode]) -> list:
        by_id = {id(o): u for o, u in zip(originals, updated)}
        body: list = []
        for orig, upd in zip(originals, updated):
            key = id(orig)
            before = self._before.get(key, [])
            if key in self._groups:
                ids, fn = self._groups[key]
                upd = fn([by_id[i] for i in ids])
            elif key in self._grouped:
                upd = None
            elif key in self._remove:
                upd = None
            if before:
                body.extend(before)
            if upd is not None:
                body.append(upd)
            body.extend(self._after.get(key, []))
        return body


# --------------------------------------------------------------------------- source helpers


def parse_stmts(code: str, module: cst.Module | None = None) -> list[cst.BaseStatement]:
    """Statements parsed from ``code`` (no leading indentation), in the module's style."""
    config = module.config_for_parsing if module is not None else cst.PartialParserConfig()
    return list(cst.parse_module(code, config=config).body)


def parse_expr(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)


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


def append_arg(call: cst.Call, arg: cst.Arg) -> cst.Call:
    """``call`` with ``arg`` appended in the call's own layout (one per line stays one per line)."""
    args = list(call.args)
    if not args:
        return call.with_changes(args=[arg])
    last = args[-1]
    multiline = "\n" in code_of(call)
    if isinstance(last.comma, cst.Comma):                   # trailing comma
        if len(args) > 1 and isinstance(args[-2].comma, cst.Comma):
            sep = args[-2].comma
        else:
            sep = cst.Comma(whitespace_after=call.whitespace_before_args if multiline
                            else cst.SimpleWhitespace(" "))
        args[-1] = last.with_changes(comma=sep)
        args.append(arg.with_changes(comma=last.comma))
    else:
        if len(args) > 1 and isinstance(args[-2].comma, cst.Comma):
            sep = args[-2].comma
        elif multiline and isinstance(call.whitespace_before_args, cst.ParenthesizedWhitespace):
            sep = cst.Comma(whitespace_after=call.whitespace_before_args)
        else:
            sep = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        args[-1] = last.with_changes(comma=sep, whitespace_after_arg=cst.SimpleWhitespace(""))
        args.append(arg.with_changes(whitespace_after_arg=last.whitespace_after_arg))
    # keyword arguments go before a trailing **kwargs only when that is the last argument
    return call.with_changes(args=args)


def set_kwarg(call: cst.Call, name: str, value_code: str) -> cst.Call:
    """``call`` with keyword ``name=value_code``: replaced when present, appended otherwise."""
    value = parse_expr(value_code)
    for i, arg in enumerate(call.args):
        if arg.keyword is not None and arg.keyword.value == name:
            args = list(call.args)
            args[i] = arg.with_changes(value=value)
            return call.with_changes(args=args)
    new = cst.Arg(value=value, keyword=cst.Name(name),
                  equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                        whitespace_after=cst.SimpleWhitespace("")))
    return append_arg(call, new)


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
