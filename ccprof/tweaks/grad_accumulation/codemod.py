"""grad_accumulation: scale the loss by 1/k, step and zero_grad every k micro-batches.

HF Trainer: ``gradient_accumulation_steps=k``; Lightning: ``accumulate_grad_batches=k``.
Options: ``accumulation_steps`` (default 4). The batch size is left alone (that is the
``batch_size`` tweak): with the same micro-batch the effective batch grows k times.
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import Skip, TweakCodemod, insert_after_imports
from ccprof.applier.codemods._cst import (
    Edits,
    expr_stmt_call,
    method_call,
    parse_expr,
    parse_stmts,
    set_kwarg,
)
from ccprof.applier.codemods._loop import require_sites
from ccprof.script.info import ScriptInfo
from ccprof.script.loop import loop_of, outermost_loop, step_stmts, trained_models

__all__ = ["GradAccumulation"]

CONSTANT = "gradient_accumulation_steps"


@register("grad_accumulation")
class GradAccumulation(TweakCodemod):
    DESCRIPTION = "Accumulate gradients over k micro-batches per optimizer step."
    ACCELERATE = "accelerator"      # Accelerator(gradient_accumulation_steps=k) + `with accelerator.accumulate(model):`

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        k = int(self.opt("steps"))
        if k < 2:
            raise Skip(f"accumulation_steps={k}: nothing to accumulate")
        if info.kind == "hf_trainer":
            return self._keyword(info, edits, info.training_args_calls(), "gradient_accumulation_steps", k,
                                 "looked for a `TrainingArguments(...)` call; pass "
                                 "--gradient_accumulation_steps on the command line")
        if info.kind == "lightning":
            return self._keyword(info, edits, info.lightning_trainer_calls(), "accumulate_grad_batches", k,
                                 "looked for a Lightning `Trainer(...)` call")
        if info.uses_accelerate():
            return self._accelerate(info, edits, k)
        self._plain(info, edits, k)

    def _accelerate(self, info: ScriptInfo, edits: Edits, k: int) -> None:
        """Accelerate counts the micro-batches itself: ``Accelerator(gradient_accumulation_steps=k)``, and
        the loop body under ``with accelerator.accumulate(model):`` (without it the setting does nothing:
        the prepared optimizer steps every time)."""
        calls = info.accelerator_calls()
        names = sorted(info.accelerator_names())
        if not calls or not names:
            raise Skip("this script uses accelerate but binds no `accelerator = Accelerator(...)` here: pass "
                       f"`--gradient_accumulation_steps {k}` to `accelerate launch`")
        for call in calls:
            edits.replace(call, lambda u: set_kwarg(u, "gradient_accumulation_steps", str(k)))
        if any(method_call(c, "accumulate") is not None for c in info.calls):
            return                                  # the loop already asks accelerator.accumulate()
        backs = info.accelerator_backward_calls()
        if not backs:
            raise Skip(f"looked for `{names[0]}.backward(loss)` in a loop and found none")
        models = sorted(trained_models(info))
        if not models:
            raise Skip("looked for the model an optimizer trains (`optimizer = ...(model.parameters())`) and found none")
        done: set[int] = set()
        for back in backs:
            loop = loop_of(info, info.stmt_of(back))
            if loop is None:
                raise Skip(f"line {info.line(back)}: `{names[0]}.backward(...)` is not inside a loop")
            if id(loop) in done:
                continue
            done.add(id(loop))
            model = next((m for m in models if "." not in m), models[0])
            edits.wrap_in_with(list(loop.body.body), parse_expr(f"{names[0]}.accumulate({model})"))

    def _keyword(self, info: ScriptInfo, edits: Edits, calls: list, key: str, k: int, missing: str) -> None:
        if not calls:
            raise Skip(missing)
        for call in calls:
            edits.replace(call, lambda u: set_kwarg(u, key, str(k)))

    def _plain(self, info: ScriptInfo, edits: Edits, k: int) -> None:
        sites = require_sites(info)
        blocks = [id(s.block) for s in sites]
        if len(set(blocks)) != len(blocks):
            lines = ", ".join(str(info.line(s.stmt)) for s in sites)
            raise Skip(f"several backward() calls in one loop (lines {lines}): accumulate by hand")
        for site in sites:
            self._site(info, edits, site, k)
        insert_after_imports(info, edits, parse_stmts(
            f"{CONSTANT} = {k}  # micro-batches per optimizer step\n", info.module))
        self.notes.append(f"The loop now steps the optimizer every {k} micro-batches: a step counter "
                          f"in the script counts micro-batches, so the run makes {k}x fewer optimizer "
                          "steps with the same number of batches; shrink the batch or raise the step "
                          "count to keep the schedule.")

    def _site(self, info: ScriptInfo, edits: Edits, site, k: int) -> None:
        body = site.body
        b = site.index
        line = info.line(site.stmt)
        scalers = info.scaler_names()
        scheds = info.scheduler_names()
        opts = info.optimizer_names()

        def step_related(stmt: cst.CSTNode) -> bool:
            call = expr_stmt_call(stmt)
            if call is None:
                return False
            if info.is_of(call, "clip_grad"):
                return True
            if isinstance(call.func, cst.Attribute) and isinstance(call.func.value, cst.Name):
                recv, meth = call.func.value.value, call.func.attr.value
                if meth == "zero_grad":
                    return True
                if recv in opts | scalers | scheds and meth in ("step", "update", "unscale_"):
                    return True
            return False

        after = [s for s in body[b + 1:] if step_related(s)]
        if not any(step_stmts(info, s) or (expr_stmt_call(s) is not None and method_call(expr_stmt_call(s), "step")
                   and isinstance(expr_stmt_call(s).func.value, cst.Name)
                   and expr_stmt_call(s).func.value.value in scalers) for s in after):
            raise Skip(f"line {line}: looked for `optimizer.step()` after `loss.backward()` in the same block")
        before = [s for s in body[:b] if step_related(s) and method_call(expr_stmt_call(s), "zero_grad")]
        # which micro-batch is this? the loop index when the loop is `for i in range(...)` /
        # `for i, batch in enumerate(...)`, else a counter of our own
        loop = loop_of(info, site.stmt)
        index = None
        if isinstance(loop, cst.For) and isinstance(loop.iter, cst.Call) and isinstance(loop.iter.func, cst.Name):
            fn = loop.iter.func.value
            if fn == "range" and isinstance(loop.target, cst.Name):
                index = loop.target.value
            elif fn == "enumerate" and isinstance(loop.target, cst.Tuple) and isinstance(
                    loop.target.elements[0].value, cst.Name):
                index = loop.target.elements[0].value.value
        if index is not None:
            cond = f"({index} + 1) % {CONSTANT} == 0"
        else:
            if loop is None:
                raise Skip(f"line {line}: looked for the for/while loop around `loss.backward()`")
            counter = "micro_step" if "micro_step" not in info.visible_names(site.stmt) else "ccprof_micro_step"
            outer = outermost_loop(info, site.stmt) or loop   # count across epochs
            edits.insert_before(outer, parse_stmts(f"{counter} = 0\n", info.module))
            edits.insert_after(site.stmt, parse_stmts(f"{counter} += 1\n", info.module))
            cond = f"{counter} % {CONSTANT} == 0"

        def scale(u: cst.Call) -> cst.Call:
            recv = u.func.value
            scale_call = method_call(recv, "scale")
            if scale_call is not None and scale_call.args:
                inner = scale_call.args[0].value
                new_recv = scale_call.with_changes(args=[scale_call.args[0].with_changes(
                    value=cst.BinaryOperation(left=inner, operator=cst.Divide(), right=cst.Name(CONSTANT)))])
            else:
                left = recv if isinstance(recv, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) \
                    else recv.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
                new_recv = cst.BinaryOperation(left=left, operator=cst.Divide(), right=cst.Name(CONSTANT),
                                               lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            return u.with_changes(func=u.func.with_changes(value=new_recv))

        edits.replace(site.call, scale)
        moved = after + before
        first = after[0]

        def make_if(stmts: list) -> cst.If:
            inner = [s.with_changes(leading_lines=[]) if i == 0 else s for i, s in enumerate(stmts)]
            inner = inner[:len(after)] + [s.with_changes(leading_lines=[]) for s in inner[len(after):]]
            return cst.If(test=parse_expr(cond), body=cst.IndentedBlock(body=inner),
                          leading_lines=first.leading_lines)

        edits.group(moved, make_if)
