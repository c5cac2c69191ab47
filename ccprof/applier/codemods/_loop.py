"""Where a codemod edits a plain PyTorch loop: the forward region to wrap, the device expression.
What the loop is (its backward, its step, the models it trains) is read by ``ccprof.script.loop``."""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods._base import Skip
from ccprof.applier.codemods._cst import assigned_names, binds, call_names, code_of, method_call
from ccprof.script.info import ScriptInfo
from ccprof.script.loop import BackwardSite, backward_sites, calls_model, is_barrier, loss_name, trained_models


def require_sites(info: ScriptInfo) -> list[BackwardSite]:
    sites = backward_sites(info)
    if not sites:
        raise Skip("looked for `loss.backward()` as a statement in the training loop and found none")
    return sites


# statements a forward region may hold besides simple lines; loops and definitions end it
REGION_COMPOUND = (cst.If, cst.With, cst.Try)


def _inner_stmts(node: cst.CSTNode) -> list[cst.CSTNode]:
    """Statements nested in ``node`` (itself included), not descending into functions or classes."""
    found: list[cst.CSTNode] = []

    class _V(cst.CSTVisitor):
        def on_visit(s, n: cst.CSTNode) -> bool:
            if isinstance(n, (cst.FunctionDef, cst.ClassDef, cst.Lambda)) and n is not node:
                return False
            if isinstance(n, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                found.append(n)
            return True

    node.visit(_V())
    return found


def bound_names(stmt: cst.CSTNode) -> set[str]:
    """Names a statement binds, looking inside if/with/try/for bodies (``with ... as x`` too)."""
    out: set[str] = set()
    for s in _inner_stmts(stmt):
        out |= binds(s)
    return out


def read_names(stmt: cst.CSTNode) -> set[str]:
    """Every plain name a statement mentions (attribute names after a dot excluded)."""
    out: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Name(s, n: cst.Name) -> None:
            out.add(n.value)

        def visit_Attribute(s, n: cst.Attribute) -> bool:
            n.value.visit(s)
            return False

    stmt.visit(_V())
    return out


def _loss_stmt(body: list[cst.BaseStatement], index: int, name: str) -> int | None:
    """Index of the statement before ``body[index]`` that last binds ``name``: a simple line, or
    an if/with/try/for holding the assignment and no backward or optimizer step of its own."""
    for i in range(index - 1, -1, -1):
        stmt = body[i]
        if isinstance(stmt, cst.SimpleStatementLine) and name in assigned_names(stmt):
            return i
        if (isinstance(stmt, (*REGION_COMPOUND, cst.For, cst.While)) and name in bound_names(stmt)
                and not is_barrier(stmt)):
            return i
        if any(method_call(c, "backward") for c in call_names(stmt)):
            return None
    return None


def forward_region(info: ScriptInfo, site: BackwardSite) -> list[cst.BaseStatement]:
    """The statements that compute the loss, from the model's first forward to the loss's
    assignment, in the backward's block.

    The region grows upward from the loss over simple lines and if/with/try statements until a
    barrier (backward, ``step()``, ``zero_grad()``, clipping) or a loop. It starts at the first
    simple line that calls the model, or at the first if/with/try that calls the model and binds a
    name the loss depends on (``output, hidden = model(data, hidden)`` in an if/else), so an
    evaluation block under ``if step % 100 == 0:`` stays outside. ``backward()`` and
    ``optimizer.step()`` are never inside, as PyTorch's AMP recipe asks.
    """
    name = loss_name(site)
    line = info.line(site.stmt)
    if name is None:
        raise Skip(f"line {line}: `{code_of(site.stmt).strip()}` - looked for `<loss>.backward()` "
                   "on a loss variable computed just before it")
    body = site.body
    a = _loss_stmt(body, site.index, name)
    if a is None:
        raise Skip(f"line {line}: looked for `{name} = ...` before `{name}.backward()` in the same block")
    s = a
    while s - 1 >= 0 and isinstance(body[s - 1], (cst.SimpleStatementLine, *REGION_COMPOUND)) \
            and not is_barrier(body[s - 1]):
        s -= 1
    # the statements the loss depends on, found by walking back through the names they bind
    needed = read_names(body[a])
    feeds = {a}
    for i in range(a - 1, s - 1, -1):
        if bound_names(body[i]) & needed:
            feeds.add(i)
            needed |= read_names(body[i])
    models = trained_models(info)
    first = next((i for i in range(s, a + 1) if calls_model(body[i], models)
                  and (i in feeds or isinstance(body[i], cst.SimpleStatementLine))), None)
    s = first if first is not None else a
    # a loss scaled for accumulation (``loss = loss / k``) after the forward is fine inside too
    return body[s:a + 1]


# autocast's device type when nothing in the script says where the model is
ANY_DEVICE = '"cuda" if torch.cuda.is_available() else "cpu"'


def device_type_expr(info: ScriptInfo, at: cst.CSTNode, region: list[cst.CSTNode] | None = None) -> str:
    """An expression for autocast's ``device_type`` that is valid at ``at``."""
    models = sorted(trained_models(info))
    used = [mname for mname in models if region is None or any(calls_model(s, {mname}) for s in region)]
    for mname in used or models:
        expr = info.model_device_expr(mname, at)
        if expr is not None:
            return f"torch.device({expr}).type"
    visible = info.visible_names(at)
    for mname in used:
        if mname in visible:
            return f"next({mname}.parameters()).device.type"
    return ANY_DEVICE
