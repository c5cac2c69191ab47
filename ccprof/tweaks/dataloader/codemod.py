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
from ccprof.applier.codemods._cst import Edits, kwarg_code, set_kwarg
from ccprof.script.applied import loader_settings
from ccprof.script.info import ScriptInfo

__all__ = ["Dataloader"]


@register("dataloader")
class Dataloader(TweakCodemod):
    DESCRIPTION = "Load batches in worker processes into pinned memory."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        n = int(self.opt("num_workers"))
        pin, persistent = self.opt("pin_memory"), self.opt("persistent_workers")
        prefetch = self.opt("prefetch_factor")
        if info.kind == "hf_trainer" and not info.calls_of("dataloader"):
            return self._hf(info, edits, n)
        if not info.calls_of("dataloader"):
            raise Skip("looked for a `torch.utils.data.DataLoader(...)` call and found none")
        for loader in loader_settings(info):
            call, workers = loader.call, loader.workers
            changes = []
            if workers is None or workers == "0":
                changes.append(("num_workers", str(n)))
                workers = str(n)
            if pin and not loader.pinned:
                changes.append(("pin_memory", "True"))
            if prefetch and kwarg_code(call, "prefetch_factor") is None:
                changes.append(("prefetch_factor", str(int(prefetch))))
            if persistent and not loader.persistent:
                # persistent_workers=True with 0 workers is an error, so guard a computed count
                changes.append(("persistent_workers", "True" if workers.isdigit() else f"{workers} > 0"))
            if changes:
                def fix(u: cst.Call, changes=changes) -> cst.Call:
                    for key, value in changes:
                        u = set_kwarg(u, key, value)
                    return u
                edits.replace(call, fix)
        if not edits:
            raise AlreadyApplied("every DataLoader already has what these options ask for")

    def _hf(self, info: ScriptInfo, edits: Edits, n: int) -> None:
        calls = info.training_args_calls()
        if not calls:
            raise Skip("looked for a `TrainingArguments(...)` call; pass --dataloader_num_workers")
        for call in calls:
            def fix(u: cst.Call, c=call) -> cst.Call:
                u = set_kwarg(u, "dataloader_num_workers", str(n))
                if kwarg_code(c, "dataloader_persistent_workers") is None:
                    u = set_kwarg(u, "dataloader_persistent_workers", "True")
                return u
            edits.replace(call, fix)
