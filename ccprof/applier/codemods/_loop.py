"""Where a plain PyTorch loop keeps its forward, backward and optimizer step."""
from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from ccprof.applier.codemods._base import Skip
from ccprof.applier.codemods._cst import (
    assigned_names, attr_chain, binds, call_names, code_of, expr_stmt_call, method_call,
)
from ccprof.applier.codemods._script import ScriptInfo

BARRIER_METHODS = ("backward", "step", "zero_grad", "update", "unscale_")


@dataclass
class BackwardSite:
    call: cst.Call                      # <receiver>.backward()
    stmt: cst.BaseStatement             # the statement holding it
    block: cst.Module | cst.IndentedBlock
    index: int                          # of stmt in block.body
    receiver: cst.BaseExpression

    @property
    def body(self) -> list[cst.BaseStatement]:
        return list(self.block.body)


def backward_sites(info: ScriptInfo) -> list[BackwardSite]:
    """Every ``<loss>.backward()`` that is a statement of its own in a block."""
    sites = []
    for call in info.backward_calls():
        stmt = info.stmt_of(call)
        block = info.block_of(stmt)
        if block is None or expr_stmt_call(stmt) is not call:
            continue
        sites.append(BackwardSite(call, stmt, block, list(block.body).index(stmt), call.func.value))  # type: ignore[union-attr]
    return sites


def require_sites(info: ScriptInfo) -> list[BackwardSite]:
    sites = backward_sites(info)
    if not sites:
        raise Skip("looked for `loss.backward()` as a statement in the training loop and found none")
    return sites


def loss_name(site: BackwardSite) -> str | None:
    """``loss`` for ``loss.backward()``, ``(loss / k).backward()`` and ``scaler.scale(loss).backward()``."""
    recv = site.receiver
    if isinstance(recv, cst.Name):
        return recv.value
    if isinstance(recv, cst.BinaryOperation) and isinstance(recv.left, cst.Name):
        return recv.left.value
    call = method_call(recv, "scale")
    if call is not None and call.args and isinstance(call.args[0].value, cst.Name):
        return call.args[0].value.value
    return None


def is_barrier(stmt: cst.CSTNode) -> bool:
    for c in call_names(stmt):
        if isinstance(c.func, cst.Attribute) and c.func.attr.value in BARRIER_METHODS:
            return True
        if isinstance(c.func, (cst.Attribute, cst.Name)) and (attr_chain(c.func) or "").endswith(
                ("clip_grad_norm_", "clip_grad_value_")):
            return True
    return False


def calls_model(stmt: cst.CSTNode, models: set[str]) -> bool:
    for c in call_names(stmt):
        chain = attr_chain(c.func) or ""
        if chain in models or (chain.split(".")[0] in models and chain.endswith(".forward")):
            return True
    return False


def trained_models(info: ScriptInfo) -> set[str]:
    """The models the loop trains: those an optimizer gets parameters from; in a script with no
    torch.optim optimizer (a hand-written update, ``p.data.add_(-lr, p.grad)``), the names whose
    ``.parameters()`` or ``.zero_grad()`` it calls. Then every name or attribute the script binds
    to one of them, wrapped or not (``self.model = DDP(model)``, ``net = model.to(device)``,
    ``self.model = model``): the forward is called through those too."""
    found = info.model_names()
    if not found:
        optimizers = {n for _, n, _ in info.optimizer_assigns() if n}
        for c in info.calls:
            call = method_call(c, "parameters") or method_call(c, "zero_grad")
            if call is not None and isinstance(call.func.value, cst.Name):  # type: ignore[union-attr]
                found.add(call.func.value.value)  # type: ignore[union-attr]
        found -= optimizers
    return found | model_aliases(info, found)


def model_aliases(info: ScriptInfo, models: set[str]) -> set[str]:
    """Names and attribute chains assigned from a model: ``X = model``, ``X = DDP(model, ...)``,
    ``X = model.to(dev)``, ``X = torch.compile(model)`` (to a fixed point)."""
    assigns: list[tuple[str, cst.BaseExpression]] = []
    for n in info.assigns():
        for t in n.targets:
            chain = attr_chain(t.target)
            if chain:
                assigns.append((chain, n.value))

    def refers(value: cst.BaseExpression, names: set[str]) -> bool:
        chain = attr_chain(value)
        if chain is not None:
            return chain in names
        if isinstance(value, cst.Call):
            if isinstance(value.func, cst.Attribute) and value.func.attr.value in ("to", "cuda", "cpu", "train",
                                                                                   "float", "half", "bfloat16"):
                return refers(value.func.value, names)
            fname = attr_chain(value.func) or ""
            if fname.split(".")[-1] in ("deepcopy", "copy"):
                return False                          # an EMA copy or a teacher: another model
            first = value.args[0].value if value.args else None
            return first is not None and attr_chain(first) in names     # a wrapper: DDP(model), compile(model)
        return False

    out = set(models)
    for _ in range(4):
        new = {chain for chain, value in assigns if chain not in out and refers(value, out)}
        if not new:
            break
        out |= new
    # `self.model = model` in a class also names `self.model` wherever that class's methods call it
    return out - set(models)


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


def loop_of(info: ScriptInfo, node: cst.CSTNode) -> cst.For | cst.While | None:
    """The innermost for/while loop holding ``node`` inside the same function."""
    for anc in info.ancestors(node):
        if isinstance(anc, (cst.For, cst.While)):
            return anc
        if isinstance(anc, (cst.FunctionDef, cst.ClassDef)):
            return None
    return None


def outermost_loop(info: ScriptInfo, node: cst.CSTNode) -> cst.For | cst.While | None:
    found = None
    for anc in info.ancestors(node):
        if isinstance(anc, (cst.For, cst.While)):
            found = anc
        if isinstance(anc, (cst.FunctionDef, cst.ClassDef)):
            break
    return found


def step_stmts(info: ScriptInfo, within: cst.CSTNode) -> list[tuple[cst.BaseStatement, cst.Call, str]]:
    """``opt.step()`` statements inside ``within``: (statement, call, optimizer name)."""
    opts = info.optimizer_names()
    out = []
    for c in info.calls_in(within):
        call = method_call(c, "step")
        if call is None or call.args:
            continue
        recv = call.func.value  # type: ignore[union-attr]
        if isinstance(recv, cst.Name) and recv.value in opts:
            stmt = info.stmt_of(call)
            if expr_stmt_call(stmt) is call:
                out.append((stmt, call, recv.value))
    return out


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
    return '"cuda" if torch.cuda.is_available() else "cpu"'
