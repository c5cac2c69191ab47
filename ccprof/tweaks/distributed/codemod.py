"""distributed: DistributedDataParallel for a plain loop, launched with torchrun.

Plain loops: a process group when torchrun started the script (``WORLD_SIZE`` > 1), the
model wrapped in ``DistributedDataParallel`` before the optimizer, a ``DistributedSampler``
on the shuffled DataLoaders (``set_epoch`` in an epoch loop), and the group destroyed at the
end. ``python script.py`` still runs on one process. Lightning: ``strategy="ddp"``. The HF
Trainer needs no change: torchrun is enough.
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import Skip, TweakCodemod, insert_after_imports
from ccprof.applier.codemods._cst import (
    Edits,
    assigned_names,
    code_of,
    kwarg,
    kwarg_code,
    parse_stmts,
    set_kwarg,
)
from ccprof.applier.codemods._model import model_insertion
from ccprof.script.info import ScriptInfo

__all__ = ["Distributed", "torchrun_command"]



def torchrun_command(path: str) -> str:
    """The launch command for a rewritten script on every GPU of one machine."""
    return f"torchrun --standalone --nproc_per_node=gpu {path}"


@register("distributed")
class Distributed(TweakCodemod):
    DESCRIPTION = "Data-parallel training on every GPU with DDP."
    ACCELERATE = ("Accelerate already runs this script data-parallel when it is launched that way: "
                  "`accelerate launch --multi_gpu --num_processes N train.py` (or `accelerate config`); "
                  "no rewrite is needed")

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        found = info.calls_of("process_group")
        if found:
            raise Skip(f"line {info.line(found[0])}: the script sets up torch.distributed itself "
                       f"(`{code_of(found[0].func).strip()}(...)`) without DDP or FSDP; wrap the model by hand")
        launch = torchrun_command(self.context.filename or "script.py")
        if info.kind == "hf_trainer":
            raise Skip(f"the HF Trainer runs DDP by itself: nothing to change in the source; launch it "
                       f"with `{launch}`")
        if info.kind == "lightning":
            for call in info.lightning_trainer_calls():
                def fix(u: cst.Call, c=call) -> cst.Call:
                    u = set_kwarg(u, "strategy", '"ddp"')
                    if kwarg_code(c, "devices") in ("1", "[0]"):
                        u = set_kwarg(u, "devices", '"auto"')
                    return u
                edits.replace(call, fix)
            return
        self._plain(info, edits, launch)

    def _plain(self, info: ScriptInfo, edits: Edits, launch: str) -> None:
        stmt, model = model_insertion(info)
        flag = "ddp" if "ddp" not in info.visible_names(stmt) else "ccprof_ddp"
        insert_after_imports(info, edits, parse_stmts(
            f"# launch on every GPU with: {launch}\n"
            f"{flag} = int(os.environ.get(\"WORLD_SIZE\", \"1\")) > 1  # started by torchrun\n"
            f"if {flag}:\n"
            "    dist.init_process_group(backend=\"nccl\" if torch.cuda.is_available() else \"gloo\")\n"
            "    if torch.cuda.is_available():\n"
            "        torch.cuda.set_device(int(os.environ[\"LOCAL_RANK\"]))\n", info.module))
        edits.insert_before(stmt, parse_stmts(
            f"if {flag}:\n"
            f"    {model} = DistributedDataParallel({model}, device_ids=[torch.cuda.current_device()] "
            "if torch.cuda.is_available() else None)\n", info.module))
        for call in info.calls_of("dataloader"):
            if kwarg_code(call, "shuffle") != "True" or kwarg(call, "sampler") is not None:
                continue
            dataset = call.args[0].value if call.args and call.args[0].keyword is None else (
                kwarg(call, "dataset").value if kwarg(call, "dataset") is not None else None)
            if dataset is None:
                continue
            ds = code_of(dataset).strip()

            def fix(u: cst.Call, ds=ds) -> cst.Call:
                u = set_kwarg(u, "shuffle", f"not {flag}")
                return set_kwarg(u, "sampler", f"DistributedSampler({ds}) if {flag} else None")
            edits.replace(call, fix)
            self.need_import("torch.utils.data.distributed", "DistributedSampler")
            self._set_epoch(info, edits, call, flag)
        info_last = info.module.body[-1]
        edits.insert_after(info_last, parse_stmts(f"\nif {flag}:\n    dist.destroy_process_group()\n", info.module))
        for mod, obj, asname in (("os", None, None), ("torch", None, None), ("torch.distributed", None, "dist"),
                                 ("torch.nn.parallel", "DistributedDataParallel", None)):
            self.need_import(mod, obj, asname)
        self.notes.append(f"launch with `{launch}`; print and save only on rank 0 "
                          "(`int(os.environ.get(\"RANK\", 0)) == 0`); under DDP reach model attributes "
                          "through `model.module`")

    def _set_epoch(self, info: ScriptInfo, edits: Edits, loader_call: cst.Call, flag: str) -> None:
        names = assigned_names(info.stmt_of(loader_call))
        if len(names) != 1:
            return
        loader = next(iter(names))
        for stmt in _fors(info.module):
            it = stmt.iter
            if isinstance(it, cst.Call) and isinstance(it.func, cst.Name) and it.func.value == "enumerate" and it.args:
                it = it.args[0].value
            if not (isinstance(it, cst.Name) and it.value == loader):
                continue
            outer = next((a for a in info.ancestors(stmt) if isinstance(a, cst.For)), None)
            if outer is not None and isinstance(outer.target, cst.Name) and info.block_of(stmt) is not None:
                edits.insert_before(stmt, parse_stmts(
                    f"if {flag}:\n    {loader}.sampler.set_epoch({outer.target.value})  # a new shuffle each epoch\n",
                    info.module))
                return
        self.notes.append(f"call `{loader}.sampler.set_epoch(epoch)` at the start of each epoch")


def _fors(node: cst.CSTNode) -> list[cst.For]:
    out: list[cst.For] = []

    class _V(cst.CSTVisitor):
        def visit_For(self, n: cst.For) -> None:
            out.append(n)

    node.visit(_V())
    return out
