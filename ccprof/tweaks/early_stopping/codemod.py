"""early_stopping: stop when the validation loss the script already computes has not improved
for ``patience`` evaluations.

Plain loops: a patience counter right after ``val_loss = ...`` (or ``losses = ...`` read as
``losses["val"]``) and a ``break`` out of the loop that evaluates. HF Trainer:
``EarlyStoppingCallback`` with ``load_best_model_at_end=True`` on ``eval_loss``. Lightning:
``EarlyStopping(monitor=<the logged val key>)``. Options: ``patience`` (default 3).
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import Skip, TweakCodemod
from ccprof.applier.codemods._cst import (
    VAL_LOSS_NAME,
    Edits,
    assigned_names,
    code_of,
    kwarg,
    kwarg_code,
    parse_stmts,
    set_kwarg,
)
from ccprof.script.info import ScriptInfo
from ccprof.script.loop import loop_of, outermost_loop

__all__ = ["EarlyStopping"]


@register("early_stopping")
class EarlyStopping(TweakCodemod):
    DESCRIPTION = "Stop training when the validation loss stops improving."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        patience = int(self.opt("patience"))
        if info.kind == "hf_trainer":
            return self._hf(info, edits, patience)
        if info.kind == "lightning":
            return self._lightning(info, edits, patience)
        return self._plain(info, edits, patience)

    def _plain(self, info: ScriptInfo, edits: Edits, patience: int) -> None:
        found = _val_loss(info)
        if found is None:
            raise Skip("looked for `val_loss = ...` (or `losses = ...` read as `losses['val']`) inside "
                       "the training loop and found none")
        stmt, expr = found
        outer = outermost_loop(info, stmt)
        edits.insert_before(outer, parse_stmts(
            f"early_stopping_patience = {patience}  # evaluations without improvement before stopping\n"
            "early_stopping_best = float(\"inf\")\n"
            "early_stopping_bad_evals = 0\n", info.module))
        edits.insert_after(stmt, parse_stmts(
            f"if float({expr}) < early_stopping_best:\n"
            f"    early_stopping_best = float({expr})\n"
            "    early_stopping_bad_evals = 0\n"
            "else:\n"
            "    early_stopping_bad_evals += 1\n"
            "    if early_stopping_bad_evals >= early_stopping_patience:\n"
            f"        print(f\"early stopping: validation loss has not improved for {{early_stopping_patience}} evaluations\")\n"
            "        break\n", info.module))
        if loop_of(info, stmt) is not outer:
            self.notes.append(f"the break at line {info.line(stmt)} leaves the inner loop only")

    def _hf(self, info: ScriptInfo, edits: Edits, patience: int) -> None:
        targs = info.training_args_calls()
        trainers = info.hf_trainer_calls()
        if not targs or not trainers:
            raise Skip("looked for `TrainingArguments(...)` and `Trainer(...)` calls in the script")
        trainer = trainers[0]
        if kwarg(trainer, "eval_dataset") is None:
            raise Skip(f"line {info.line(trainer)}: the Trainer has no `eval_dataset=`, so there is no "
                       "validation loss to stop on")
        for call in targs:
            def fix(u: cst.Call, c=call) -> cst.Call:
                strategy = kwarg_code(c, "eval_strategy") or kwarg_code(c, "evaluation_strategy")
                if strategy is None or strategy.strip("'\"") == "no":
                    strategy = '"epoch"'
                    u = set_kwarg(u, "eval_strategy", strategy)
                if kwarg_code(c, "save_strategy") != strategy:
                    u = set_kwarg(u, "save_strategy", strategy)
                eval_steps = kwarg_code(c, "eval_steps")
                if strategy.strip("'\"") == "steps" and eval_steps is not None:
                    u = set_kwarg(u, "save_steps", eval_steps)
                u = set_kwarg(u, "load_best_model_at_end", "True")
                u = set_kwarg(u, "metric_for_best_model", '"eval_loss"')
                return set_kwarg(u, "greater_is_better", "False")
            edits.replace(call, fix)
        cb = f"EarlyStoppingCallback(early_stopping_patience={patience})"
        edits.replace(trainer, lambda u: _add_callback(u, cb))
        self.need_import("transformers", "EarlyStoppingCallback")

    def _lightning(self, info: ScriptInfo, edits: Edits, patience: int) -> None:
        key = None
        for c in info.method_calls("log"):
            if c.args and isinstance(c.args[0].value, cst.SimpleString):
                text = c.args[0].value.evaluated_value
                if isinstance(text, str) and "val" in text and "loss" in text:
                    key = text
                    break
        if key is None:
            raise Skip("looked for `self.log(\"val_loss\", ...)` in the LightningModule and found none")
        cb = f'EarlyStopping(monitor="{key}", mode="min", patience={patience})'
        for call in info.lightning_trainer_calls():
            edits.replace(call, lambda u: _add_callback(u, cb))
        self.need_import(f"{info.lightning_root()}.callbacks", "EarlyStopping")


def _add_callback(call: cst.Call, cb: str) -> cst.Call:
    arg = kwarg(call, "callbacks")
    if arg is None:
        return set_kwarg(call, "callbacks", f"[{cb}]")
    if isinstance(arg.value, cst.List):
        inner = code_of(arg.value).strip()[1:-1].strip().rstrip(",")
        return set_kwarg(call, "callbacks", f"[{inner + ', ' if inner else ''}{cb}]")
    return set_kwarg(call, "callbacks", f"[*{code_of(arg.value).strip()}, {cb}]")


def _val_loss(info: ScriptInfo) -> tuple[cst.BaseStatement, str] | None:
    """(assignment statement, expression of the validation loss) inside a training loop."""
    subscripted: dict[str, str] = {}
    for sub in _subscripts(info.module):
        if isinstance(sub.value, cst.Name) and len(sub.slice) == 1:
            idx = sub.slice[0].slice
            if isinstance(idx, cst.Index) and isinstance(idx.value, cst.SimpleString) and \
                    idx.value.evaluated_value in ("val", "valid", "validation", "eval"):
                subscripted.setdefault(sub.value.value, code_of(sub).strip())
    backward_loops = {id(outermost_loop(info, c)) for c in info.backward_calls()}
    # first in the loop that runs backward; else in any loop (an epoch loop calling train())
    for strict in (True, False):
        for stmt in _stmts(info.module):
            loop = outermost_loop(info, stmt)
            if loop is None or info.block_of(stmt) is None or (strict and id(loop) not in backward_loops):
                continue
            for n in sorted(assigned_names(stmt)):
                if VAL_LOSS_NAME.match(n):
                    return stmt, n
                if n in subscripted:
                    return stmt, subscripted[n]
    return None


def _subscripts(node: cst.CSTNode) -> list[cst.Subscript]:
    out: list[cst.Subscript] = []

    class _V(cst.CSTVisitor):
        def visit_Subscript(self, n: cst.Subscript) -> None:
            out.append(n)

    node.visit(_V())
    return out


def _stmts(node: cst.CSTNode) -> list[cst.SimpleStatementLine]:
    out: list[cst.SimpleStatementLine] = []

    class _V(cst.CSTVisitor):
        def visit_SimpleStatementLine(self, n: cst.SimpleStatementLine) -> None:
            out.append(n)

    node.visit(_V())
    return out
