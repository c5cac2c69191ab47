"""Where a plain PyTorch loop keeps its backward, its optimizer step and the models it trains:
read by the codemods (where to edit) and by the fact readers (``ccprof.script.applied``: does the
loop already accumulate?)."""
from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from ccprof.script.info import ScriptInfo
from ccprof.script.nodes import attr_chain, call_names, expr_stmt_call, method_call

__all__ = ["BARRIER_METHODS", "BackwardSite", "backward_sites", "loss_name", "is_barrier", "calls_model",
           "trained_models", "model_aliases", "loop_of", "outermost_loop", "step_stmts"]

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
