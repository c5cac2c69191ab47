"""``--dry-run --nproc N --nnodes M``: the script's ``torch.distributed`` sees N x M ranks without them.

One process runs the script as rank 0 of a world of ``N x M`` ranks (``N`` GPUs per node, ``M``
nodes): the environment torchrun would give it (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``...), and ``init_process_group`` (any backend the script asks
for: nccl, gloo, "cpu:gloo,cuda:nccl") on torch's fake process group, which completes every
collective at once without sending anything. DDP, FSDP (1 and 2), tensor parallelism (DTensor)
and DeviceMesh then shard and bucket as they would on that many ranks: the parameters rank 0 keeps,
its gradients' buckets and its optimizer state are what its GPU would hold. Every collective goes
through the dispatcher (``c10d.allreduce_``, ``c10d._allgather_base_``, ``_c10d_functional.*``),
where the FLOP pass records it as an op row with its bytes, its group's size and how many nodes
the group spans (``ccprof.profiler._flop_ops.collective_attrs``); the cost model costs it over the
catalog's links.

What stands in for the other ranks (each recorded as a stand-in):

- every rank does what rank 0 does (data parallelism: the same shapes on every rank); the stages
  of a ``torch.distributed.pipelining`` schedule, whose ranks differ in work, are each traced by
  a dry run of their own rank, run together (``ccprof.profiler.dryrun_pipe``);
- a collective's result is its input buffer as it was (no values cross ranks: there are none);
- DDP's checks that every rank has the same parameters, and its rebuild of the gradient buckets
  in the order backward produced them (after the first step), are skipped: the buckets keep the
  parameters' order, the same sizes.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["fake_world", "FakeWorkMode", "WORLD_ENV"]

# what torchrun sets for each rank (torch.distributed.run); the dry run's process is rank 0
WORLD_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "ROLE_RANK",
             "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


class FakeWorkMode(TorchDispatchMode):
    """A fake process group's collectives return a Work whose future holds no tensors; DDP's
    reducer (and any comm hook) reads the reduced bucket from that future. This mode hands back a
    completed Work holding the op's own output tensors instead."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "c10d" and isinstance(out, tuple) and len(out) == 2 \
                and isinstance(out[1], torch.ScriptObject):
            from torch._C._distributed_c10d import _create_work_from_future
            fut: torch.futures.Future = torch.futures.Future()
            fut.set_result(out[0])
            out = (out[0], _create_work_from_future(fut).boxed())
        return out


def _world_env(nproc: int, nnodes: int, rank: int = 0) -> dict[str, str]:
    world = nproc * nnodes
    node = str(rank // nproc)
    return {"RANK": str(rank), "LOCAL_RANK": str(rank % nproc), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": node, "NODE_RANK": node, "ROLE_RANK": str(rank),
            "ROLE_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
            "TORCHELASTIC_RUN_ID": "ccprof-dry-run"}


@contextlib.contextmanager
def fake_world(log: Any, nproc: int, nnodes: int = 1, rank: int = 0, out: str | None = None,
               traced: list[int] | None = None, timeout_s: float | None = None) -> Iterator[None]:
    """The script runs as rank ``rank`` (0 unless a pipeline's stage is traced) of ``nproc x nnodes``
    ranks on a fake process group (module docstring); ``log`` (a ``StandInLog``) gets the stand-ins.
    ``out``: the profile's path, beside which a pipeline found is written and the stages' object
    channel lives; ``traced``: every rank a dry run traces at once (a pipeline's, ``ccprof.profiler.
    dryrun_pipe``; empty: this one alone), whose objects are waited for up to ``timeout_s`` (None: 24
    hours). Restores the environment, torch's functions and the default process group on leaving."""
    import torch.distributed as dist
    import torch.distributed.distributed_c10d as c10d
    import torch.nn.parallel.distributed as ddp_mod
    from torch.testing._internal.distributed.fake_pg import FakeStore  # registers the "fake" backend

    from ccprof.profiler.dryrun import Patches
    from ccprof.profiler.dryrun_weights import _script_line

    world = nproc * nnodes
    saved_env = {k: os.environ.get(k) for k in WORLD_ENV}
    patches = Patches()
    try:
        os.environ.update(_world_env(nproc, nnodes, rank))
        traced = list(traced or [])
        log.assume(f"The script ran as rank {rank} of {world} ranks ({nnodes} node(s) of {nproc} GPU(s)) with torchrun's "
                   "environment and a fake process group: every other rank is taken to do what rank "
                   f"{rank} does{' (pipeline stages aside: each traced as its own rank)' if traced else ''}, and a "
                   "collective's result is its input as it was.")
        original_init = c10d.init_process_group
        me = rank                               # the script's own rank= argument is another (ignored) one

        def init_process_group(backend: Any = None, init_method: Any = None, timeout: Any = None,
                               world_size: int = -1, rank: int = -1, store: Any = None, *args: Any,
                               **kwargs: Any) -> None:
            log.note(f"init_process_group(backend={backend!r}) made a fake process group of {world} ranks "
                     f"(no collective sends anything; this process is rank {me})", world, where=_script_line())
            kwargs.pop("device_id", None)       # a device id names a GPU this machine does not have
            extra = {"timeout": timeout} if timeout is not None else {}
            original_init("fake", world_size=world, rank=me, store=FakeStore(), **extra)
        _bind_everywhere(patches, "init_process_group", init_process_group)

        from ccprof.profiler.dryrun_pipe import ObjectChannel, watch_schedules
        # a torch without the pipeline schedules' hook: no stages are traced, no objects cross
        watching = watch_schedules(log, patches, out, traced)
        channel = ObjectChannel(out, rank, timeout_s or 86400.0) if out and traced and watching else None
        _object_collectives(log, patches, channel, traced)

        def same_shapes(*args: Any, **kwargs: Any) -> None:
            return None                         # every rank builds the same model: nothing to compare
        patches.set(ddp_mod, "_verify_param_shape_across_processes", same_shapes)

        ddp = ddp_mod.DistributedDataParallel
        original_ddp_init = ddp.__init__

        def ddp_init(self: Any, module: Any, device_ids: Any = None, output_device: Any = None,
                     *args: Any, **kwargs: Any) -> None:
            if (device_ids or output_device is not None) and all(p.device.type == "cpu" for p in module.parameters()):
                # the dry run's GPU is a CPU device underneath; DDP refuses device_ids for a CPU module
                log.note(f"DistributedDataParallel(device_ids={device_ids!r}) wrapped the model without device_ids "
                         "(the dry run's GPU tensors live on the CPU device)", None, where=_script_line())
                device_ids, output_device = None, None
            original_ddp_init(self, module, device_ids, output_device, *args, **kwargs)
        patches.set(ddp, "__init__", ddp_init)

        from torch.distributed.fsdp import FullyShardedDataParallel as fsdp1
        original_fsdp1_init = fsdp1.__init__

        def fsdp1_init(self: Any, module: Any, *args: Any, **kwargs: Any) -> None:
            # FSDP (1) needs the device it computes on; the dry run's GPU tensors live on the CPU device
            if kwargs.get("device_id") is not None and str(kwargs["device_id"]) != "cpu":
                log.note(f"FullyShardedDataParallel(device_id={kwargs['device_id']!r}) computes on the CPU device (the "
                         "dry run's GPU tensors live there)", None, where=_script_line())
            kwargs["device_id"] = torch.device("cpu")
            original_fsdp1_init(self, module, *args, **kwargs)
        patches.set(fsdp1, "__init__", fsdp1_init)

        from torch.distributed import device_mesh as mesh_mod
        original_mesh_init = mesh_mod.DeviceMesh.__init__

        def mesh_init(self: Any, device_type: str, *args: Any, **kwargs: Any) -> None:
            # a mesh of the script's GPUs is a mesh of the CPU device its fake tensors live on
            original_mesh_init(self, "cpu" if str(device_type).startswith("cuda") else device_type, *args, **kwargs)
        patches.set(mesh_mod.DeviceMesh, "__init__", mesh_init)

        original_pre = ddp._pre_forward

        def pre_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
            reducer = self.reducer
            self.reducer = _KeepBuckets(reducer, log)
            try:
                return original_pre(self, *args, **kwargs)
            finally:
                self.reducer = reducer
        patches.set(ddp, "_pre_forward", pre_forward)
        with FakeWorkMode():
            yield
    finally:
        patches.undo()
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _KeepBuckets:
    """DDP's reducer as its ``_pre_forward`` sees it, without the rebuild of the buckets in
    backward's order after the first step (the rebuild syncs the order across ranks by writing
    into an int tensor, which a fake one cannot hold). Everything else is the reducer's own."""

    def __init__(self, reducer: Any, log: Any) -> None:
        object.__setattr__(self, "_reducer", reducer)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reducer, name)

    def _rebuild_buckets(self) -> bool:
        self._log.assume("DDP's gradient buckets keep the parameters' order: a real run rebuilds them in "
                         "backward's order after its first step (the same bucket sizes, another order).")
        return False


def _object_collectives(log: Any, patches: Any, channel: Any = None, traced: list[int] | None = None) -> None:
    """Python objects sent between ranks (pickled into tensors, which a fake tensor cannot hold):
    every rank's object is this rank's own, as every rank is taken to do what it does. Sent to or
    received from another traced rank (a pipeline's stage, ``channel``: ``dryrun_pipe.ObjectChannel``),
    an object crosses for real; received from a rank not traced, it is not known, and stops the dry
    run with the script's line (``DryRunUnsupported``)."""
    import torch.distributed as dist

    from ccprof.profiler.dryrun import DryRunUnsupported
    from ccprof.profiler.dryrun_weights import _script_line
    traced = list(traced or [])

    def said(name: str) -> None:
        log.note(f"{name}: every rank's object taken to be this rank's own", None, where=_script_line())

    def peer(rank: int | None, group: Any, group_rank: int | None) -> int | None:
        if rank is None and group_rank is not None:
            return dist.get_global_rank(group, group_rank) if group is not None else group_rank
        return rank

    def broadcast_object_list(object_list: list, *args: Any, **kwargs: Any) -> None:
        said("broadcast_object_list")            # rank 0's objects stay as they are

    def all_gather_object(object_list: list, obj: Any, *args: Any, **kwargs: Any) -> None:
        said("all_gather_object")
        object_list[:] = [obj] * len(object_list)

    def gather_object(obj: Any, object_gather_list: list | None = None, *args: Any, **kwargs: Any) -> None:
        said("gather_object")
        if object_gather_list is not None:
            object_gather_list[:] = [obj] * len(object_gather_list)

    def scatter_object_list(out: list, inputs: list | None = None, *args: Any, **kwargs: Any) -> None:
        said("scatter_object_list")
        if out and inputs:
            out[0] = inputs[0]

    def send_object_list(object_list: list, dst: int | None = None, group: Any = None, device: Any = None,
                         group_dst: int | None = None, use_batch: bool = False) -> None:
        to = peer(dst, group, group_dst)
        if channel is not None and to in traced:
            channel.send(list(object_list), to)
        else:
            said("send_object_list")

    def recv_object_list(object_list: list, src: int | None = None, group: Any = None, device: Any = None,
                         group_src: int | None = None, use_batch: bool = False) -> int:
        frm = peer(src, group, group_src)
        if channel is None or frm not in traced:
            raise DryRunUnsupported("recv_object_list: a dry run traces rank 0 (and a pipeline's stages) and cannot "
                                    f"know what rank {frm} sends it; trace a data-parallel, FSDP, tensor-parallel or "
                                    "torch.distributed.pipelining script")
        got = channel.recv(frm)
        object_list[:len(got)] = got
        return frm

    stand_ins = {"broadcast_object_list": broadcast_object_list, "all_gather_object": all_gather_object,
                 "gather_object": gather_object, "scatter_object_list": scatter_object_list,
                 "send_object_list": send_object_list, "recv_object_list": recv_object_list}
    for name, fn in stand_ins.items():
        _bind_everywhere(patches, name, fn)


def _bind_everywhere(patches: Any, name: str, replacement: Any) -> None:
    """``torch.distributed.<name>`` replaced in every ``torch.distributed*`` module that holds it,
    including those that bound it by name before the dry run (DeviceMesh's ``init_process_group``)."""
    import torch.distributed as dist
    original = getattr(dist, name, None)
    if original is None:
        return
    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith("torch.distributed") and getattr(mod, name, None) is original:
            patches.set(mod, name, replacement)
