"""libcst helpers the codemods share: the one-pass ``Edits`` plan and the builders of nodes
(``set_kwarg``, ``parse_stmts`` ...). The read-only helpers (``kwarg``, ``assigned_names`` ...) live
with the one reader of a script, ``ccprof.script.nodes``, and are re-exported here for the codemods."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

import libcst as cst

from ccprof.script.nodes import (
    FUSED_CAPABLE,
    VAL_LOSS_NAME,
    assigned_names,
    attr_chain,
    binds,
    call_names,
    code_of,
    expr_stmt_call,
    kwarg,
    kwarg_code,
    last_part,
    method_call,
    names_in,
)

__all__ = ["FUSED_CAPABLE", "VAL_LOSS_NAME", "last_part", "Edits", "parse_stmts", "parse_expr",
           "code_of", "kwarg", "kwarg_code", "append_arg", "set_kwarg", "call_names", "names_in",
           "assigned_names", "binds", "attr_chain", "method_call", "expr_stmt_call"]

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

    def wrap_in_with(self, stmts: Sequence[cst.BaseStatement], head: cst.BaseExpression) -> None:
        """``stmts`` (consecutive statements of one block) become the body of ``with head:``, which
        takes the first statement's leading lines (comments, blank lines)."""
        first = stmts[0]

        def wrap(updated: list) -> cst.With:
            inner = [updated[0].with_changes(leading_lines=[])] + list(updated[1:])
            return cst.With(items=[cst.WithItem(item=head)], body=cst.IndentedBlock(body=inner),
                            leading_lines=first.leading_lines)

        self.group(stmts, wrap)

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


