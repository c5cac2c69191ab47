"""tf32: let fp32 matmuls and convolutions use TF32 tensor cores (Ampere and newer).

Two plain ``torch.backends`` lines after the imports, for every kind of script (the HF
``tf32=True`` argument refuses to run on a machine without an Ampere GPU).
"""
from __future__ import annotations

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import TweakCodemod, insert_after_imports
from ccprof.applier.codemods._cst import Edits, parse_stmts
from ccprof.script.info import ScriptInfo

__all__ = ["Tf32"]

LINES = ("torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere+ GPUs\n"
         "torch.backends.cudnn.allow_tf32 = True\n")


@register("tf32")
class Tf32(TweakCodemod):
    DESCRIPTION = "Enable TF32 for fp32 matmuls and cuDNN convolutions."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        insert_after_imports(info, edits, parse_stmts(LINES, info.module))
        self.need_import("torch")
