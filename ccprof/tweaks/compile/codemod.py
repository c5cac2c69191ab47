"""compile: ``model = torch.compile(model)`` before the optimizer is built (plain loops), before
``trainer.fit(model)`` (Lightning); ``torch_compile=True`` for the HF Trainer.

Note: a compiled module's ``state_dict()`` keys start with ``_orig_mod.``.
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, parse_stmts, set_kwarg
from ccprof.applier.codemods._model import model_insertion
from ccprof.script.info import ScriptInfo

__all__ = ["Compile"]


@register("compile")
class Compile(TweakCodemod):
    DESCRIPTION = "Compile the model with torch.compile."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        if info.kind == "hf_trainer":
            calls = info.training_args_calls()
            if not calls:
                raise Skip("looked for a `TrainingArguments(...)` call; pass --torch_compile on the command line")
            for call in calls:
                edits.replace(call, lambda u: set_kwarg(u, "torch_compile", "True"))
            return
        if info.kind == "lightning":
            for c in info.method_calls("fit"):
                if c.args and isinstance(c.args[0].value, cst.Name):
                    name = c.args[0].value.value
                    edits.insert_before(info.stmt_of(c), parse_stmts(f"{name} = torch.compile({name})\n", info.module))
                    self.need_import("torch")
                    return
            raise Skip("looked for `trainer.fit(model, ...)` to compile the model before it")
        stmt, name = model_insertion(info)
        edits.insert_before(stmt, parse_stmts(f"{name} = torch.compile({name})\n", info.module))
        self.need_import("torch")
