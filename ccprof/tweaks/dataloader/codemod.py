"""dataloader: workers, pinned memory and persistent workers on every ``DataLoader(...)``;
``dataloader_num_workers`` & co. for the HF Trainer.

Options (``DataloaderOptions``): ``num_workers`` (default 4); ``pin_memory`` and
``persistent_workers`` (added unless set to False); ``prefetch_factor`` (added when set). Loaders over an ``IterableDataset`` class of the
script are left alone (workers would each replay the whole stream).
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, code_of, kwarg, kwarg_code, last_part, set_kwarg
from ccprof.script.info import ScriptInfo

__all__ = ["Dataloader"]


@register("dataloader")
class Dataloader(TweakCodemod):
    DESCRIPTION = "Load batches in worker processes into pinned memory."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        n = int(self.opt("num_workers"))
        pin, persistent = self.opt("pin_memory"), self.opt("persistent_workers")
        prefetch = self.opt("prefetch_factor")
        loaders = info.calls_of("dataloader")
        if info.kind == "hf_trainer" and not loaders:
            return self._hf(info, edits, n)
        if not loaders:
            raise Skip("looked for a `torch.utils.data.DataLoader(...)` call and found none")
        iterable = {cd.name.value for cd in info.class_defs
                    if any(last_part(q) == "IterableDataset" for b in cd.bases for q in info.qnames(b.value))}
        for call in loaders:
            dataset = call.args[0].value if call.args and call.args[0].keyword is None else (
                kwarg(call, "dataset").value if kwarg(call, "dataset") is not None else None)
            if dataset is not None and isinstance(dataset, cst.Call) and code_of(dataset.func).strip() in iterable:
                continue
            positional = sum(1 for a in call.args if a.keyword is None)
            workers = kwarg_code(call, "num_workers")
            if positional >= 6:
                workers = code_of(call.args[5].value).strip()
            changes = []
            if workers is None or workers == "0":
                changes.append(("num_workers", str(n)))
                workers = str(n)
            if pin and kwarg_code(call, "pin_memory") is None and positional < 8:
                changes.append(("pin_memory", "True"))
            if prefetch and kwarg_code(call, "prefetch_factor") is None:
                changes.append(("prefetch_factor", str(int(prefetch))))
            if persistent and kwarg_code(call, "persistent_workers") is None:
                # persistent_workers=True with 0 workers is an error, so guard a computed count
                changes.append(("persistent_workers", "True" if workers.isdigit() else f"{workers} > 0"))
            if changes:
                def fix(u: cst.Call, changes=changes) -> cst.Call:
                    for key, value in changes:
                        u = set_kwarg(u, key, value)
                    return u
                edits.replace(call, fix)
        if not edits:
            raise AlreadyApplied(f"the DataLoader at line {info.line(loaders[0])} has workers, "
                                 "pin_memory and persistent_workers")

    def _hf(self, info: ScriptInfo, edits: Edits, n: int) -> None:
        calls = info.training_args_calls()
        if not calls:
            raise Skip("looked for a `TrainingArguments(...)` call; pass --dataloader_num_workers")
        for call in calls:
            cur = kwarg_code(call, "dataloader_num_workers")
            if cur is not None and cur != "0":
                raise AlreadyApplied(f"`dataloader_num_workers={cur}` at line {info.line(call)}")
        for call in calls:
            def fix(u: cst.Call, c=call) -> cst.Call:
                u = set_kwarg(u, "dataloader_num_workers", str(n))
                if kwarg_code(c, "dataloader_persistent_workers") is None:
                    u = set_kwarg(u, "dataloader_persistent_workers", "True")
                return u
            edits.replace(call, fix)
