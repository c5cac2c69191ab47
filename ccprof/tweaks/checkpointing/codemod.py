"""checkpointing: recompute activations in backward instead of keeping them.

Custom models (a model class in the script with ``for block in self.blocks: x = block(x)``):
each block call becomes ``torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)``.
Transformers models: ``model.gradient_checkpointing_enable(...)`` right after the model is
built. HF Trainer: ``gradient_checkpointing=True``.
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import Skip, TweakCodemod
from ccprof.applier.codemods._cst import (
    Edits,
    call_names,
    code_of,
    kwarg_code,
    parse_expr,
    parse_stmts,
    set_kwarg,
)
from ccprof.script.info import ScriptInfo

__all__ = ["Checkpointing"]

HF_ENABLE = 'gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})'


@register("checkpointing")
class Checkpointing(TweakCodemod):
    DESCRIPTION = "Gradient (activation) checkpointing of the repeated blocks."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        if info.kind == "hf_trainer":
            calls = info.training_args_calls()
            if not calls:
                raise Skip("looked for a `TrainingArguments(...)` call; pass --gradient_checkpointing")
            for call in calls:
                def fix(u: cst.Call, c=call) -> cst.Call:
                    u = set_kwarg(u, "gradient_checkpointing", "True")
                    if kwarg_code(c, "gradient_checkpointing_kwargs") is None:
                        u = set_kwarg(u, "gradient_checkpointing_kwargs", '{"use_reentrant": False}')
                    return u
                edits.replace(call, fix)
            return
        if self._block_loops(info, edits):
            self.need_import("torch.utils.checkpoint")
            return
        if self._hf_model(info, edits):
            return
        raise Skip("looked for a `for block in self.<blocks>: x = block(x)` loop in a model class of "
                   "this script, and for a transformers model built here; found neither (if the model "
                   "class lives in another file, apply checkpointing to that file)")

    def _block_loops(self, info: ScriptInfo, edits: Edits) -> bool:
        changed = False
        for cd in info.nn_module_classes():
            for fn in cd.body.body:
                if not (isinstance(fn, cst.FunctionDef) and fn.name.value == "forward"):
                    continue
                for loop in _fors(fn):
                    block = _block_var(loop)
                    if block is None:
                        continue
                    for c in call_names(loop.body):
                        if isinstance(c.func, cst.Name) and c.func.value == block:
                            edits.replace(c, _checkpointed)
                            changed = True
        return changed

    def _hf_model(self, info: ScriptInfo, edits: Edits) -> bool:
        for call in info.hf_model_calls():
            stmt = info.stmt_of(call)
            if not isinstance(stmt, cst.SimpleStatementLine) or not isinstance(stmt.body[0], cst.Assign):
                continue
            target = stmt.body[0].targets[0].target
            if isinstance(target, (cst.Name, cst.Attribute)) and info.block_of(stmt) is not None:
                edits.insert_after(stmt, parse_stmts(f"{code_of(target).strip()}.{HF_ENABLE}\n", info.module))
                return True
        return False


def _fors(fn: cst.FunctionDef) -> list[cst.For]:
    found: list[cst.For] = []

    class _V(cst.CSTVisitor):
        def visit_For(self, n: cst.For) -> None:
            found.append(n)

    fn.visit(_V())
    return found


def _block_var(loop: cst.For) -> str | None:
    """``block`` for ``for block in self.blocks`` / ``for i, block in enumerate(self.blocks)``."""
    it, target = loop.iter, loop.target
    if isinstance(it, cst.Call) and isinstance(it.func, cst.Name) and it.func.value == "enumerate" and it.args:
        it = it.args[0].value
        if not (isinstance(target, cst.Tuple) and len(target.elements) == 2):
            return None
        target = target.elements[1].value
    if not (isinstance(it, cst.Attribute) and code_of(it).strip().startswith("self.")):
        return None
    return target.value if isinstance(target, cst.Name) else None


def _checkpointed(u: cst.Call) -> cst.Call:
    args = [cst.Arg(value=u.func, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))]
    rest = list(u.args)
    if rest:
        rest[-1] = rest[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    flag = cst.Arg(value=cst.Name("False"), keyword=cst.Name("use_reentrant"),
                   equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                         whitespace_after=cst.SimpleWhitespace("")))
    return u.with_changes(func=parse_expr("torch.utils.checkpoint.checkpoint"), args=args + rest + [flag])
