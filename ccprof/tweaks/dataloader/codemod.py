"""dataloader: workers, pinned memory and persistent workers on every ``DataLoader(...)``;
``dataloader_num_workers`` & co. for the HF Trainer.

With the run's sites (``--from advice.json``): on the loader that fed training, each value where the
run took it from (``_settings.set_value``: ``--trainer.num_workers=4`` on the command line for a
config field the run set there, the keyword at the call in the script); a setting the loader leaves
to its default in another file of the project is named with its file and line. The rewrite is
refused when the worker count cannot be set.

Options (``DataloaderOptions``): ``num_workers`` (default 4); ``pin_memory`` and
``persistent_workers`` (added unless set to False); ``prefetch_factor`` (added when set). Loaders over an ``IterableDataset`` class of the
script are left alone (workers would each replay the whole stream).
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, kwarg_code, set_kwarg
from ccprof.applier.codemods._settings import set_value
from ccprof.artefacts.profile import CallSite, Setting
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
        site = self.run.training("dataloader")
        if site is not None and not (info.kind == "hf_trainer" and not info.calls_of("dataloader")):
            return self._from_run(info, edits, site, n, pin, persistent, prefetch)
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

    def _from_run(self, info: ScriptInfo, edits: Edits, site: CallSite, n: int, pin, persistent, prefetch) -> None:
        """The training loader's values, each where the run took it from."""
        script = self.context.filename or ""
        where = f"{site.file}:{site.line}" if site.file else "the training DataLoader"

        def setting(name: str) -> Setting:
            return self.run.setting(site, name) or Setting(name, kind="default", file=site.file, line=site.line)

        workers = setting("num_workers")
        wanted: list[tuple[Setting, str]] = []
        if not workers.value:
            wanted.append((workers, str(n)))
        if pin and setting("pin_memory").value is not True:
            wanted.append((setting("pin_memory"), "True"))
        if persistent and setting("persistent_workers").value is not True:
            # persistent_workers=True with 0 workers is an error: a count the call reads from a variable
            # (another run may set it to 0) guards it
            count = workers.code if workers.kind not in ("literal", "default") else ""
            wanted.append((setting("persistent_workers"), f"{count} > 0" if count else "True"))
        if prefetch and self.run.setting(site, "prefetch_factor") is None:
            wanted.append((setting("prefetch_factor"), str(int(prefetch))))
        if not wanted:
            raise AlreadyApplied(f"the training DataLoader ({where}) has num_workers={workers.value}, pinned memory "
                                 "and persistent workers")
        refused = []
        for s, code in wanted:
            placed = set_value(info, edits, site, s, code, script=script, argv=self.argv)
            if placed.ok:
                self.command_line.update(placed.command_line)
                self.notes.append(f"{s.name}={code} at {placed.where}")
            elif s is workers:
                raise Skip(f"num_workers: {placed.refusal}")
            else:
                refused.append(f"{s.name}: {placed.refusal}")
        self.notes += refused
        if not edits and not self.command_line:
            raise Skip("; ".join(refused))

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
