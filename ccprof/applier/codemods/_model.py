"""Where the model is finished and the optimizer not yet built: the place for model surgery."""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods._base import Skip
from ccprof.applier.codemods._cst import assigned_names, attr_chain, call_names, kwarg, method_call
from ccprof.script.info import ScriptInfo


def model_insertion(info: ScriptInfo) -> tuple[cst.BaseStatement, str]:
    """(statement to insert before, model name): the optimizer statement of a plain loop, or
    the ``Trainer(model=...)`` statement of an HF script."""
    if info.kind == "hf_trainer":
        for call in info.hf_trainer_calls():
            arg = kwarg(call, "model")
            if arg is not None and isinstance(arg.value, cst.Name):
                return info.stmt_of(call), arg.value.value
        raise Skip("looked for `Trainer(model=<name>, ...)` to change the model before it")
    models = info.model_names()
    sites = []
    for stmt, _name, call in info.optimizer_assigns():
        for arg_model in sorted(models):
            if arg_model in param_owners(call) and info.block_of(stmt) is not None:
                sites.append((stmt, arg_model))
                break
    if sites:
        # several optimizers (pretrain, then fine-tune): the model loaded from a checkpoint, else the last
        loaded = [s for s in sites if _loaded_before(info, *s)]
        if loaded:
            return loaded[-1]
        last = sites[-1]
        # one model with several optimizers: before the first of them
        return next(s for s in sites if s[1] == last[1] and info.func_of(s[0]) is info.func_of(last[0]))
    raise Skip("looked for `optimizer = torch.optim.<Optimizer>(model.parameters(), ...)` "
               "to change the model just before the optimizer is built")


def param_owners(call: cst.Call) -> set[str]:
    """Names whose ``.parameters()`` / ``.named_parameters()`` the optimizer call ``call`` takes."""
    out = set()
    for inner in call_names(call):
        for meth in ("parameters", "named_parameters"):
            c = method_call(inner, meth)
            if c is not None and isinstance(c.func.value, cst.Name):  # type: ignore[union-attr]
                out.add(c.func.value.value)  # type: ignore[union-attr]
    return out


def _loaded_before(info: ScriptInfo, stmt: cst.BaseStatement, name: str) -> bool:
    """``name`` (or a part of it) gets checkpoint weights in ``stmt``'s block before ``stmt``."""
    block = info.block_of(stmt)
    body = list(block.body) if block is not None else []
    for prev in body[:body.index(stmt)] if stmt in body else []:
        for c in call_names(prev):
            chain = attr_chain(c.func) or ""
            if chain.endswith((".load_state_dict", ".from_pretrained")) and (
                    chain.split(".")[0] == name or name in assigned_names(prev)):
                return True
    return False
