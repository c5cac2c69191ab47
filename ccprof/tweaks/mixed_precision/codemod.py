"""mixed_precision: autocast around forward and loss (GradScaler for fp16); ``bf16=True`` for the
HF Trainer; ``precision="bf16-mixed"`` for Lightning.

Options: ``dtype`` "bf16" (default) or "fp16".
"""
from __future__ import annotations

from typing import Callable

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import Skip, TweakCodemod, insert_after_imports
from ccprof.applier.codemods._cst import (
    Edits,
    attr_chain,
    call_names,
    code_of,
    kwarg_code,
    parse_expr,
    parse_stmts,
    set_kwarg,
)
from ccprof.applier.codemods._loop import (
    ANY_DEVICE,
    REGION_COMPOUND,
    bound_names,
    device_type_expr,
    forward_region,
    require_sites,
)
from ccprof.applier.codemods._sites import RunSites
from ccprof.artefacts.profile import CallSite
from ccprof.artefacts.vocab import normalize_dtype
from ccprof.script.info import ScriptInfo
from ccprof.script.loop import calls_model, is_barrier, loop_of, outermost_loop, step_stmts, trained_models

__all__ = ["MixedPrecision", "normalize_dtype"]


_BCE_FUNCS = ("torch.nn.functional.binary_cross_entropy",)
_BCE_CLASSES = ("torch.nn.BCELoss", "torch.nn.modules.loss.BCELoss")


def _bce_names(info: ScriptInfo) -> set[str]:
    """Names and attributes bound to ``nn.BCELoss()`` (``criterion = nn.BCELoss()``)."""
    out: set[str] = set()
    if not info.facts.mentions("BCELoss"):
        return out                       # no qualified name can end so
    for n in info.assigns():
        if isinstance(n.value, cst.Call) and info.is_call_to(n.value, _BCE_CLASSES):
            for t in n.targets:
                chain = attr_chain(t.target)
                if chain:
                    out.add(chain)
    return out


def _bce_call(info: ScriptInfo, c: cst.Call, bce: set[str]) -> bool:
    return info.is_call_to(c, _BCE_FUNCS) or (attr_chain(c.func) or "") in bce or (
        isinstance(c.func, cst.Call) and info.is_call_to(c.func, _BCE_CLASSES))


def _calls_bce(info: ScriptInfo, stmt: cst.CSTNode, bce: set[str]) -> bool:
    return any(_bce_call(info, c, bce) for c in call_names(stmt))


def _float_bce_args(info: ScriptInfo, stmt: cst.CSTNode, bce: set[str]) -> cst.CSTNode:
    """Every BCE call in ``stmt`` with ``.float()`` on its first two arguments."""
    class _T(cst.CSTTransformer):
        def leave_Call(s, orig: cst.Call, upd: cst.Call) -> cst.Call:
            name = attr_chain(upd.func) or ""
            is_bce = name in bce or name.split(".")[-1] == "binary_cross_entropy" or (
                isinstance(upd.func, cst.Call) and (attr_chain(upd.func.func) or "").endswith("BCELoss"))
            if not is_bce:
                return upd
            args = list(upd.args)
            for i in range(min(2, len(args))):
                v = args[i].value
                if not (isinstance(v, cst.Call) and isinstance(v.func, cst.Attribute) and v.func.attr.value == "float"):
                    args[i] = args[i].with_changes(value=cst.Call(func=cst.Attribute(value=v, attr=cst.Name("float"))))
            return upd.with_changes(args=args)

    return stmt.visit(_T())


def _forward_callees(info: ScriptInfo, stmt: cst.CSTNode, line: int) -> set[str]:
    """The calls on the run's ``line`` of a forward statement that can be the model's: a plain name
    or ``self.<name>`` that is neither imported nor a function or class of the script (``model`` in
    ``output = model(*input)``; not ``trainer.run()``)."""
    defined = {f.name.value for f in info.func_defs} | {c.name.value for c in info.class_defs}
    found = set()
    for c in call_names(stmt):
        if info.line(c) != line:
            continue
        chain = attr_chain(c.func)
        if chain is not None and chain.endswith(".forward"):
            chain = chain[:-len(".forward")]                       # model.forward(x)
        if chain is None or chain.count(".") > (1 if chain.startswith("self.") else 0) or chain in defined:
            continue
        if any(q.source.name in ("IMPORT", "BUILTIN") for q in info.facts.qualified(c.func)):
            continue
        found.add(chain)
    return found


@register("mixed_precision")
class MixedPrecision(TweakCodemod):
    DESCRIPTION = "Autocast forward and loss to bf16/fp16 (GradScaler for fp16)."
    ACCELERATE = "accelerator"      # Accelerator(mixed_precision="bf16") autocasts the prepared model

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        dtype = normalize_dtype(self.opt("dtype"))
        if info.kind == "hf_trainer":
            return self._hf(info, edits, dtype)
        if info.uses_accelerate():
            return self._accelerate(info, edits, dtype)
        if info.kind == "lightning":
            return self._lightning(info, edits, dtype)
        return self._plain(info, edits, dtype)

    # ---- Hugging Face Trainer
    def _hf(self, info: ScriptInfo, edits: Edits, dtype: str) -> None:
        calls = info.training_args_calls()
        if not calls:
            raise Skip("looked for a `TrainingArguments(...)` call; this Trainer gets its arguments "
                       "elsewhere (HfArgumentParser?): pass --bf16 on its command line")
        for call in calls:
            def fix(u: cst.Call, c=call) -> cst.Call:
                u = set_kwarg(u, dtype, "True")
                if dtype == "bf16" and kwarg_code(c, "use_cpu") is None and kwarg_code(c, "no_cuda") is None:
                    # transformers refuses bf16=True on a machine without a bf16 GPU unless use_cpu is set
                    u = set_kwarg(u, "use_cpu", "not torch.cuda.is_available()")
                    self.need_import("torch")
                return u
            edits.replace(call, fix)

    # ---- Hugging Face Accelerate
    def _accelerate(self, info: ScriptInfo, edits: Edits, dtype: str) -> None:
        calls = info.accelerator_calls()
        if not calls:
            raise Skip("this script uses accelerate but builds no `Accelerator(...)` here: pass "
                       f"`--mixed_precision {dtype}` to `accelerate launch`, or set it in `accelerate config`")
        for call in calls:
            edits.replace(call, lambda u: set_kwarg(u, "mixed_precision", f'"{dtype}"'))
        self.notes.append(f"Accelerator(mixed_precision=\"{dtype}\") autocasts the forward of every model passed to "
                          "accelerator.prepare()" + (" and scales the loss in accelerator.backward()" if dtype == "fp16"
                                                     else ""))

    # ---- Lightning Trainer
    def _lightning(self, info: ScriptInfo, edits: Edits, dtype: str) -> None:
        value = '"bf16-mixed"' if dtype == "bf16" else '"16-mixed"'
        for call in info.lightning_trainer_calls():
            edits.replace(call, lambda u: set_kwarg(u, "precision", value))

    # ---- plain loop
    def _plain(self, info: ScriptInfo, edits: Edits, dtype: str) -> None:
        torch_dtype = "torch.bfloat16" if dtype == "bf16" else "torch.float16"
        self._bce_lines: list[int] = []
        self._callees: dict[int, str] = {}          # forward statement -> the model it calls
        forwards = self.run.of("forward", "train")
        if forwards:
            regions = self._run_regions(info, edits, forwards)
            sites = require_sites(info) if dtype == "fp16" else []
        else:
            sites = require_sites(info)
            models = trained_models(info)
            regions = []
            for site in sites:
                region = forward_region(info, site)
                if not any(calls_model(stmt, models) for stmt in region):
                    raise Skip(f"line {info.line(site.stmt)}: looked for the forward of "
                               f"{', '.join(sorted(models)) or 'the model'} before `{code_of(site.stmt).strip()}` in "
                               "the same block and found none; autocast around the loss alone would not run the "
                               "forward in the new precision")
                region = self._unsafe_loss(info, edits, region,
                                           lambda stmts: any(calls_model(s, models) for s in stmts))
                regions.append(region)
        if self._bce_lines:
            self.notes.append(f"line{'s' if len(self._bce_lines) > 1 else ''} "
                              f"{', '.join(map(str, self._bce_lines))}: BCELoss is autocast-unsafe, so the loss "
                              "stays outside autocast on float32 inputs (BCEWithLogitsLoss on the logits, without the "
                              "final Sigmoid, is the safe and faster form)")
        for region in regions:
            callee = next((self._callees[id(st)] for st in region if id(st) in self._callees), None)
            dev = device_type_expr(info, region[0], region)
            if dev == ANY_DEVICE and callee is not None:        # the model the run called there
                dev = f"next({callee}.parameters()).device.type"
            edits.wrap_in_with(region, parse_expr(f"torch.autocast(device_type={dev}, dtype={torch_dtype})"))
        self.need_import("torch")
        if dtype == "fp16":
            self._scaler(info, edits, sites)

    def _run_regions(self, info: ScriptInfo, edits: Edits, forwards: list[CallSite]) -> list[list]:
        """The regions to autocast where the run called each trained model's forward in training
        (``CallSite(what="forward", role="train")``, in any function of the script: ``train_iter``):
        the forward's statement and those after it in its block up to the backward (or another
        optimizer barrier, a loop, the block's end), less trailing statements that bind nothing (a
        print of the loss). Regions of one block that overlap merge."""
        script = self.context.filename or ""
        outside = RunSites.outside(forwards, script)
        if outside:
            s, at = outside
            raise Skip(f"the run called the forward of {s.cls.rsplit('.', 1)[-1] or 'the model'} at {at}"
                       "; this rewrite edits only this script: wrap that forward and its loss in "
                       "`with torch.autocast(...)` there, or build the model with a mixed-precision option")
        spans: dict[int, tuple[list, list[tuple[int, int]]]] = {}
        for s in forwards:
            stmt = info.stmt_at(s.line)
            block = info.block_of(stmt) if stmt is not None else None
            if stmt is None or block is None:
                raise Skip(f"line {s.line}: the run called the model's forward there, but no statement of the "
                           "script holds that line (was the script edited since the run?)")
            if is_barrier(stmt):
                raise Skip(f"line {info.line(stmt)}: `{code_of(stmt).strip()}` runs the forward and the backward "
                           "(or the optimizer) in one statement; compute the loss on its own line first, so "
                           "autocast can cover the forward and the loss and not the backward")
            callees = _forward_callees(info, stmt, s.line)
            if not callees:
                raise Skip(f"line {s.line}: the run reached the forward of {s.cls.rsplit('.', 1)[-1] or 'the model'} "
                           f"through `{code_of(stmt).strip()}`, which does not call the model itself (a library's "
                           "loop?): autocast must wrap the forward and the loss, not the backward; set that "
                           "library's mixed-precision option instead")
            while True:
                body = list(block.body)
                i = j = body.index(stmt)
                while j + 1 < len(body) and isinstance(body[j + 1], (cst.SimpleStatementLine, *REGION_COMPOUND)) \
                        and not is_barrier(body[j + 1]):
                    j += 1
                # a forward in an if/else, with or try body that ends there: the loss is computed
                # after that statement, so the region is the whole statement and what follows it
                owner = info.stmt_of(block) if isinstance(block, cst.IndentedBlock) else None
                outer = info.block_of(owner) if owner is not None else None
                if j + 1 < len(body) or not isinstance(owner, REGION_COMPOUND) or is_barrier(owner) \
                        or outer is None:
                    break
                stmt, block = owner, outer
            while j > i and not bound_names(body[j]):
                j -= 1                  # a trailing print or log of the loss stays outside
            spans.setdefault(id(block), (body, []))[1].append((i, j))
            if len(callees) == 1:
                self._callees[id(stmt)] = next(iter(callees))
        regions = []
        for body, pairs in spans.values():
            merged: list[list[int]] = []
            for i, j in sorted(set(pairs)):
                if merged and i <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], j)
                else:
                    merged.append([i, j])
            for i, j in merged:
                regions.append(self._unsafe_loss(info, edits, body[i:j + 1], bool))
        return regions

    def _unsafe_loss(self, info: ScriptInfo, edits: Edits, region: list,
                     has_forward: Callable[[list], bool]) -> list:
        """Autocast refuses ``binary_cross_entropy`` (nn.BCELoss) on CUDA: it is unsafe in 16-bit.
        PyTorch's recipe: leave the loss out of the autocast region and give it float32 inputs.
        Returns the region without the statements that call it; their inputs are cast ``.float()``.
        ``has_forward``: whether statements (the region's head before that loss) run the forward."""
        bce = _bce_names(info)
        cut = next((i for i, stmt in enumerate(region) if _calls_bce(info, stmt, bce)), None)
        if cut is None:
            return region
        if not has_forward(region[:cut]):
            raise Skip(f"line {info.line(region[cut])}: the forward and an autocast-unsafe BCELoss share "
                       "one statement; split the loss onto its own line (or use BCEWithLogitsLoss) first")
        for stmt in region[cut:]:
            if _calls_bce(info, stmt, bce):
                edits.replace(stmt, lambda u, b=bce: _float_bce_args(info, u, b))
        self._bce_lines.append(info.line(region[cut]))
        return region[:cut]

    def _scaler(self, info: ScriptInfo, edits: Edits, sites: list) -> None:
        used = set().union(*(info.visible_names(s.stmt) for s in sites))
        scaler = "scaler" if "scaler" not in used else "grad_scaler"
        first = sites[0]
        # create the scaler where it is visible from the loop: after the optimizer when both
        # live in the same function, else just before the loop
        opt_stmt = None
        for stmt, _name, _call in info.optimizer_assigns():
            if info.func_of(stmt) is info.func_of(first.stmt) and info.block_of(stmt) is not None:
                opt_stmt = stmt
        loop = outermost_loop(info, first.stmt)
        anchor = opt_stmt if opt_stmt is not None else loop
        if anchor is None and info.func_of(first.stmt) is None:
            raise Skip(f"line {info.line(first.stmt)}: fp16 needs a GradScaler; looked for the optimizer "
                       "or the training loop around `loss.backward()`")
        if anchor is None:
            # the step is a function the loop calls (``train_iter(model, optimizer, ...)``): one scaler
            # for the whole run, at module level, where that function sees it
            create = parse_stmts(f"{scaler} = torch.amp.GradScaler(\"cuda\" if torch.cuda.is_available() else "
                                 "\"cpu\")  # fp16 needs loss scaling\n", info.module)
            insert_after_imports(info, edits, create)
        else:
            dev = device_type_expr(info, anchor)
            create = parse_stmts(f"{scaler} = torch.amp.GradScaler({dev})  # fp16 needs loss scaling\n",
                                 info.module)
            if opt_stmt is not None:
                edits.insert_after(opt_stmt, create)
            else:
                edits.insert_before(loop, create)
        stepped = False
        seen: set[int] = set()
        for site in sites:
            edits.replace(site.call, lambda u, s=scaler: u.with_changes(func=u.func.with_changes(
                value=cst.Call(func=parse_expr(f"{s}.scale"), args=[cst.Arg(value=u.func.value)]))))
            within = loop_of(info, site.stmt) or info.func_of(site.stmt) or info.module
            for stmt, _call, opt in step_stmts(info, within):
                stepped = True
                if id(stmt) in seen:
                    continue
                seen.add(id(stmt))
                edits.replace(stmt, lambda u, o=opt: u.with_changes(
                    body=[cst.Expr(parse_expr(f"{scaler}.step({o})"))]))
                edits.insert_after(stmt, parse_stmts(f"{scaler}.update()\n", info.module))
                for c in info.calls_in(within):
                    if info.is_of(c, "clip_grad") and id(c) not in seen:
                        seen.add(id(c))
                        edits.insert_before(info.stmt_of(c), parse_stmts(f"{scaler}.unscale_({opt})\n", info.module))
        if not stepped:
            raise Skip(f"line {info.line(first.stmt)}: fp16 needs `scaler.step(optimizer)`; looked for "
                       "`optimizer.step()` in the loop around `loss.backward()`")
