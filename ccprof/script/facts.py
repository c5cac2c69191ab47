"""The one model of a parsed script: what one version of it says, computed once and shared by
every reader (the profiler's static facts, and each codemod that reads that version).

libcst's usual codemod path costs several whole-tree passes per codemod: a deep copy of the
module (``MetadataWrapper``), one visitor pass per metadata provider (parents, positions,
scopes, qualified names), and a second codemod for the imports with its own copy. On an
18,000-line script that is about a minute per tweak. ``ModuleFacts`` gets the code, the
parent of every node, every node's start line (as ``PositionProvider`` gives it) and the
nodes in source order from one code-generation pass, and runs scope analysis (for
qualified names) only when a codemod asks for a qualified name. A tweak that changes
nothing leaves the facts valid for the next one.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

import libcst as cst
from libcst._nodes.internal import CodegenState
from libcst.metadata import MetadataWrapper, QualifiedName, ScopeProvider

__all__ = ["ModuleFacts"]

_NEWLINE = re.compile(r"\r\n?|\n")


class _FactsState(CodegenState):
    """Code generation that also records each node's parent, source order and start line."""

    __slots__ = ("line", "parents", "order", "lines", "_stack", "shared")

    def __init__(self, module: cst.Module) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.line = 1
        self.parents: dict[cst.CSTNode, cst.CSTNode | None] = {}
        self.order: list[cst.CSTNode] = []
        self.lines: dict[cst.CSTNode, int] = {}
        self._stack: list[tuple[cst.CSTNode | None, int]] = [(None, 1)]
        self.shared = False         # a node object that sits in two places of the tree

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        if "\n" in value or "\r" in value:
            self.line += value.count("\n") if "\r" not in value else len(_NEWLINE.findall(value))

    def before_codegen(self, node: cst.CSTNode) -> None:
        if node in self.parents:
            self.shared = True
        self.parents[node] = self._stack[-1][0]
        self.order.append(node)
        self._stack.append((node, self.line))

    def after_codegen(self, node: cst.CSTNode) -> None:
        _, start = self._stack.pop()
        if node not in self.lines:              # as PositionProvider: whitespace-inclusive start
            self.lines[node] = start

    @contextmanager
    def record_syntactic_position(self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None,
                                  end_node: cst.CSTNode | None = None) -> Iterator[None]:
        start = self.line
        try:
            yield
        finally:                                # as PositionProvider: the syntactic start
            self.lines[node] = self.lines[start_node] if start_node is not None else start


class ModuleFacts:
    """Code, parents, start lines and source order of one module version; qualified names on demand.

    ``module`` must not hold one node object in two places (a fresh parse never does; a
    codemod's rewrite may): such a module is deep-cloned first, as libcst's MetadataWrapper does.
    """

    def __init__(self, module: cst.Module) -> None:
        state = self._scan(module)
        if state.shared:
            module = module.deep_clone()
            state = self._scan(module)
        self.module = module
        self.code: str = "".join(state.tokens)
        self._parents = state.parents
        self._lines = state.lines
        self.nodes: list[cst.CSTNode] = state.order          # every node, in source order
        self._scopes: dict | None = None
        self._qnames: dict[cst.CSTNode, frozenset[str]] = {}
        self._qualified: dict[cst.CSTNode, frozenset[QualifiedName]] = {}
        self._by_type: dict[type, list] = {}

    @staticmethod
    def _scan(module: cst.Module) -> _FactsState:
        state = _FactsState(module)
        module._codegen(state)
        return state

    def of_type(self, cls: type) -> list:
        """Nodes of exactly this type, in source order (what a visitor's ``visit_<cls>`` sees)."""
        found = self._by_type.get(cls)
        if found is None:
            found = self._by_type[cls] = [n for n in self.nodes if type(n) is cls]
        return found

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._parents.get(node)

    def line(self, node: cst.CSTNode) -> int:
        """The node's first line (PositionProvider's start line); 0 for a node not in the module."""
        return self._lines.get(node, 0)

    def mentions(self, *words: str) -> bool:
        """Whether any of ``words`` occurs in the code. Every part of a qualified name is an
        identifier of the source, so no node has a qualified name with a part absent from it."""
        return any(w in self.code for w in words)

    def qualified(self, node: cst.CSTNode) -> frozenset[QualifiedName]:
        """As ``QualifiedNameProvider``: the qualified names of ``node`` with where each comes
        from (``source``: IMPORT, BUILTIN or LOCAL); {} when none. Scope analysis runs once,
        at the first question."""
        found = self._qualified.get(node)
        if found is None:
            if self._scopes is None:
                self._scopes = MetadataWrapper(self.module, unsafe_skip_copy=True).resolve(ScopeProvider)
            scope = self._scopes.get(node)
            found = frozenset(scope.get_qualified_names_for(node)) if scope else frozenset()
            self._qualified[node] = found
        return found

    def qnames(self, node: cst.CSTNode) -> frozenset[str]:
        """The qualified names of ``node`` as strings (``torch.optim.AdamW``)."""
        found = self._qnames.get(node)
        if found is None:
            found = self._qnames[node] = frozenset(q.name for q in self.qualified(node))
        return found

    @property
    def scopes_resolved(self) -> bool:
        return self._scopes is not None
