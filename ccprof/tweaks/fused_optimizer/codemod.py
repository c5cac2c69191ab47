"""fused_optimizer: ``fused=True`` on torch.optim Adam/AdamW/SGD/Adagrad (``foreach=True`` on
the others that have it); ``optim="adamw_torch_fused"`` for the HF Trainer."""
from __future__ import annotations

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import Skip, TweakCodemod
from ccprof.applier.codemods._cst import FUSED_CAPABLE, Edits, kwarg_code, set_kwarg
from ccprof.applier.codemods._sites import RunSites, where
from ccprof.script.info import ScriptInfo

__all__ = ["FusedOptimizer"]

FOREACH_CAPABLE = ("Adadelta", "Adamax", "ASGD", "NAdam", "RAdam", "RMSprop", "Rprop")


@register("fused_optimizer")
class FusedOptimizer(TweakCodemod):
    DESCRIPTION = "One fused kernel (or foreach kernels) for the whole parameter update."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        if info.kind == "hf_trainer" and not info.optimizer_calls():
            calls = info.training_args_calls()
            if not calls:
                raise Skip("looked for a `TrainingArguments(...)` call; pass --optim adamw_torch_fused")
            for call in calls:
                cur = kwarg_code(call, "optim")
                if cur is not None and cur.strip("'\"") not in ("adamw_torch", "adamw_hf"):
                    raise Skip(f"line {info.line(call)}: `optim={cur}` is a chosen optimizer; looked for "
                               "the default AdamW to make it fused")
            for call in calls:
                edits.replace(call, lambda u: set_kwarg(u, "optim", '"adamw_torch_fused"'))
            return
        calls = info.optimizer_calls()
        if not calls:
            raise Skip(self._elsewhere())
        for call in calls:
            cls = info.optimizer_class(call)
            if kwarg_code(call, "fused") not in (None, "False", "None") or kwarg_code(call, "foreach") not in (
                    None, "False", "None"):
                continue
            if cls in FUSED_CAPABLE:
                edits.replace(call, lambda u: set_kwarg(u, "fused", "True"))
            elif cls in FOREACH_CAPABLE:
                edits.replace(call, lambda u: set_kwarg(u, "foreach", "True"))
        if not edits:
            raise Skip(f"line {info.line(calls[0])}: `{info.optimizer_class(calls[0])}` has no fused or "
                       "foreach implementation")

    def _elsewhere(self) -> str:
        """Why there is nothing to rewrite in the script: where the run built its optimizer."""
        site = self.run.training("optimizer")
        if site is None or RunSites.in_script(site.file, self.context.filename or ""):
            return ("the script builds no `torch.optim.<Optimizer>(...)` (nor did the run record where its "
                    "optimizer was built: run `ccprof analyze` and pass --from advice.json); pass fused=True "
                    "where your code builds it")
        cls = site.cls.rsplit(".", 1)[-1]
        at = where(site, self.context.filename or "")
        fused = RunSites.setting(site, "fused")
        if fused is not None and fused.code.startswith("**"):
            return (f"the optimizer that trains is built at {at} (`{cls}(..., {fused.code})`), which takes "
                    f"`fused` from `{fused.code[2:]}`: in this run it held none; if your code adds fused=True "
                    "there on CUDA only, the GPU run already has it; otherwise set it there (ccprof rewrites "
                    "only the script)")
        return (f"the optimizer that trains is built at {at} (`{cls}(...)`), outside the script: pass "
                "fused=True there (ccprof rewrites only the script)")
