"""tf32: let fp32 matmuls and convolutions use TF32 tensor cores (Ampere and newer).

Two plain ``torch.backends`` lines after the imports, for every kind of script (the HF
``tf32=True`` argument refuses to run on a machine without an Ampere GPU).
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, TweakCodemod, insert_after_imports
from ccprof.applier.codemods._cst import Edits, code_of, kwarg_code, parse_stmts
from ccprof.script.info import ScriptInfo

__all__ = ["Tf32"]

LINES = ("torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere+ GPUs\n"
         "torch.backends.cudnn.allow_tf32 = True\n")


@register("tf32")
class Tf32(TweakCodemod):
    DESCRIPTION = "Enable TF32 for fp32 matmuls and cuDNN convolutions."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        found = _tf32_line(info)
        if found is not None:
            raise AlreadyApplied(found)
        insert_after_imports(info, edits, parse_stmts(LINES, info.module))
        self.need_import("torch")


def _tf32_line(info: ScriptInfo) -> str | None:
    for call in info.calls_to(("torch.set_float32_matmul_precision",)):
        if call.args and code_of(call.args[0].value).strip().strip("'\"") in ("high", "medium"):
            return f"`{code_of(call).strip()}` at line {info.line(call)}"
    for call in info.training_args_calls():
        if kwarg_code(call, "tf32") == "True":
            return f"`tf32=True` in TrainingArguments at line {info.line(call)}"

    found: list[cst.Assign] = []
    for n in info.assigns():
        for t in n.targets:
            if isinstance(t.target, cst.Attribute) and t.target.attr.value == "allow_tf32" \
                    and code_of(n.value).strip() == "True":
                found.append(n)
    if found:
        return f"`{code_of(found[0]).strip()}` at line {info.line(found[0])}"
    return None
