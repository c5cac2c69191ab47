"""batch_size: set the training batch size to ``options["batch_size"]``.

Where the script says it: the ``--batch-size`` argparse default, the shuffled DataLoader's
``batch_size=`` literal or a module-level ``batch_size = N``; ``per_device_train_batch_size``
for the HF Trainer.
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, code_of, kwarg, kwarg_code, set_kwarg
from ccprof.script.info import ScriptInfo

__all__ = ["BatchSize"]

FLAGS = ("--batch-size", "--batch_size", "--bs", "--train-batch-size", "--train_batch_size")


@register("batch_size")
class BatchSize(TweakCodemod):
    DESCRIPTION = "Train with a larger batch that fits the memory headroom."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        if self.opt("batch_size") is None:
            raise Skip("needs the new size: --option batch_size=N (or --from advice.json)")
        size = str(int(self.opt("batch_size")))
        if info.kind == "hf_trainer":
            calls = info.training_args_calls()
            if not calls:
                raise Skip("looked for a `TrainingArguments(...)` call; pass --per_device_train_batch_size")
            for call in calls:
                cur = kwarg_code(call, "per_device_train_batch_size")
                if cur == size:
                    raise AlreadyApplied(f"`per_device_train_batch_size={size}` at line {info.line(call)}")
                edits.replace(call, lambda u: set_kwarg(u, "per_device_train_batch_size", size))
            return
        for call in info.calls_matching(lambda q: q.endswith("add_argument")) + info.method_calls("add_argument"):
            if call.args and isinstance(call.args[0].value, cst.SimpleString) and \
                    call.args[0].value.evaluated_value in FLAGS and kwarg(call, "default") is not None:
                return self._set(info, edits, call, "default", size)
        for call in info.calls_of("dataloader"):
            if kwarg_code(call, "shuffle") in ("True", None) and kwarg(call, "batch_size") is not None:
                value = kwarg(call, "batch_size").value
                if isinstance(value, cst.Integer):
                    return self._set(info, edits, call, "batch_size", size)
        for stmt in info.module.body:
            if isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Assign) and \
                    code_of(stmt.body[0].targets[0].target).strip() == "batch_size" and \
                    isinstance(stmt.body[0].value, cst.Integer):
                if stmt.body[0].value.value == size:
                    raise AlreadyApplied(f"`batch_size = {size}` at line {info.line(stmt)}")
                edits.replace(stmt.body[0], lambda u: u.with_changes(value=cst.Integer(size)))
                return
        raise Skip("looked for a `--batch-size` argparse default, a `DataLoader(..., batch_size=N)` "
                   "literal and a module-level `batch_size = N`; found none")

    def _set(self, info: ScriptInfo, edits: Edits, call: cst.Call, key: str, size: str) -> None:
        if kwarg_code(call, key) == size:
            raise AlreadyApplied(f"`{key}={size}` at line {info.line(call)}")
        edits.replace(call, lambda u: set_kwarg(u, key, size))
