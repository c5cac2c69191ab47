"""lora: ``model = get_peft_model(model, LoraConfig(...))`` after the model is built and before
the optimizer (plain loops) or the Trainer (HF); after ``self.model = ...from_pretrained(...)``
in a LightningModule.

Options: ``lora_rank`` (8), ``lora_alpha`` (2 x rank), ``lora_dropout`` (0),
``lora_targets`` (list or comma-separated names; default: the ``self.<name> = nn.Linear``
attributes of the script's model classes without the output head, else "all-linear").
"""
from __future__ import annotations

import re

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, code_of, parse_stmts
from ccprof.applier.codemods._model import model_insertion
from ccprof.script.info import ScriptInfo

__all__ = ["Lora", "linear_attributes"]

HEAD_NAMES = re.compile(r"^(lm_head|head|classifier|score|output|out|fc_out|logits|decoder)$")


def linear_attributes(info: ScriptInfo) -> list[str]:
    """``self.<name> = nn.Linear(...)`` names in the script's model classes, in source order."""
    names: list[str] = []
    for call in info.calls_to(("torch.nn.Linear", "torch.nn.modules.linear.Linear")):
        stmt = info.stmt_of(call)
        if isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Assign) \
                and stmt.body[0].value is call:
            target = stmt.body[0].targets[0].target
            if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) \
                    and target.value.value == "self" and target.attr.value not in names:
                names.append(target.attr.value)
    return names


@register("lora")
class Lora(TweakCodemod):
    DESCRIPTION = "Freeze the base weights and train LoRA adapters (peft)."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        config = self._config(info)
        if info.kind == "lightning":
            for call in info.hf_model_calls():
                stmt = info.stmt_of(call)
                if isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Assign):
                    target = code_of(stmt.body[0].targets[0].target).strip()
                    edits.insert_after(stmt, parse_stmts(f"{target} = get_peft_model({target}, {config})\n",
                                                         info.module))
                    break
            else:
                raise Skip("looked for `self.model = <transformers model>.from_pretrained(...)` in the "
                           "LightningModule to wrap it with peft")
        else:
            stmt, name = model_insertion(info)
            edits.insert_before(stmt, parse_stmts(f"{name} = get_peft_model({name}, {config})\n", info.module))
        self.need_import("peft", "LoraConfig")
        self.need_import("peft", "get_peft_model")

    def _config(self, info: ScriptInfo) -> str:
        rank = int(self.opt("rank"))
        alpha = int(self.opt("alpha"))
        dropout = float(self.opt("dropout"))
        targets = self.opt("targets")
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        heads: list[str] = []
        if not targets and not info.hf_model_calls():
            linears = linear_attributes(info)
            targets = [n for n in linears if not HEAD_NAMES.match(n)]
            # a fresh head must train in full; a head tied to the embedding stays as it is
            heads = [n for n in linears if HEAD_NAMES.match(n) and f"self.{n}.weight =" not in info.code]
        target_code = repr(list(targets)).replace("'", '"') if targets else '"all-linear"'
        parts = [f"r={rank}", f"lora_alpha={alpha}", f"lora_dropout={dropout}", f"target_modules={target_code}"]
        if heads:
            parts.append(f"modules_to_save={heads!r}".replace("'", '"'))
        task = info.hf_task_type()
        if task is not None:
            parts.append(f'task_type="{task}"')
        return f"LoraConfig({', '.join(parts)})"
