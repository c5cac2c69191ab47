"""Where a plain PyTorch loop keeps its forward, backward and optimizer step."""
from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from ccprof.applier.codemods._base import (
    ScriptInfo, Skip, assigned_names, attr_chain, call_names, code_of, expr_stmt_call, method_call,
)

BARRIER_METHODS = ("backward", "step", "zero_grad", "update", "unscale_")
CLIP_NAMES = ("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_value_",
              "torch.nn.utils.clip_grad.clip_grad_norm_")


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


def forward_region(info: ScriptInfo, site: BackwardSite) -> list[cst.BaseStatement]:
    """The statements that compute the loss, ending with its assignment, in the backward's block."""
    name = loss_name(site)
    line = info.line(site.stmt)
    if name is None:
        raise Skip(f"line {line}: `{code_of(site.stmt).strip()}` - looked for `<loss>.backward()` "
                   "on a loss variable computed just before it")
    body = site.body
    a = None
    for i in range(site.index - 1, -1, -1):
        stmt = body[i]
        if isinstance(stmt, cst.SimpleStatementLine) and name in assigned_names(stmt):
            a = i
            break
        if isinstance(stmt, cst.With) and any(name in assigned_names(s) for s in stmt.body.body):
            return [stmt]
        if any(method_call(c, "backward") for c in call_names(stmt)):
            break
    if a is None:
        raise Skip(f"line {line}: looked for `{name} = ...` before `{name}.backward()` in the same block")
    s = a
    while s - 1 >= 0 and isinstance(body[s - 1], cst.SimpleStatementLine) and not is_barrier(body[s - 1]):
        s -= 1
    models = info.model_names()
    first = next((i for i in range(s, a + 1) if calls_model(body[i], models)), None)
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
    for c in call_names(within):
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
    models = sorted(info.model_names())
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
