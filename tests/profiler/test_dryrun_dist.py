"""--dry-run --nproc N --nnodes M in one process: the script's torch.distributed sees N x M ranks
on a fake process group; DDP and FSDP2 shard and bucket as on that many ranks; every collective
becomes an op row with its bytes, its group's size and the nodes it spans; nothing leaks out."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn as nn

from ccprof.profiler.dryrun import describe, dry_run
from ccprof.profiler.dryrun_dist import WORLD_ENV
from ccprof.profiler.flops import FlopPass


def _mlp(width: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width))


def _step(model: nn.Module, wrapped: nn.Module, width: int = 64):
    """One recorded training step of ``wrapped``: (Flops, op rows)."""
    opt = torch.optim.AdamW(wrapped.parameters())
    fp = FlopPass({"": model})
    fp.start()
    loss = wrapped(torch.randn(8, width, device="cuda")).square().mean()
    fp.set_phase("backward")
    loss.backward()
    fp.set_phase("optimizer")
    opt.step()
    return fp.stop()


def _collectives(ops):
    return sorted((o.op, o.phase, o.count, o.attrs["bytes"], o.attrs["group"], o.attrs["nodes"])
                  for o in ops if o.op.startswith("c10d."))


def test_ddp_all_reduces_every_gradient_byte_across_the_whole_world():
    before = {k: os.environ.get(k) for k in WORLD_ENV}
    with dry_run(cuda=True, world=(8, 2)) as log:
        dist.init_process_group("nccl")
        assert (dist.get_world_size(), dist.get_rank(), os.environ["LOCAL_WORLD_SIZE"]) == (16, 0, "8")
        assert torch.cuda.device_count() == 8
        model = _mlp().cuda()
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[0])
        _, ops = _step(model, ddp)
    grad_bytes = sum(p.numel() * 4 for p in model.parameters())
    coll = _collectives(ops)
    assert [c[0] for c in coll] == ["c10d.allreduce_"] and coll[0][1] == "backward"
    assert sum(c[2] * c[3] for c in coll) == grad_bytes          # the buckets hold every gradient once
    assert {(c[4], c[5]) for c in coll} == {(16, 2)}
    # nothing of the fake world is left behind
    assert not dist.is_initialized()
    assert {k: os.environ.get(k) for k in WORLD_ENV} == before
    d = describe(log, world=(8, 2))
    assert (d.nproc, d.nnodes) == (8, 2)
    assert any("rank 0 of 16 ranks (2 node(s) of 8 GPU(s))" in a for a in d.assumptions)
    inits = [s for s in d.stand_ins if s.what.startswith("init_process_group(backend='nccl')")]
    assert inits and inits[0].file == os.path.abspath(__file__)
    assert any("device_ids=[0]" in s.what for s in d.stand_ins)


def test_fsdp2_keeps_one_shard_per_rank_and_gathers_each_block():
    from torch.distributed.fsdp import fully_shard
    with dry_run(cuda=True, world=(4, 1)):
        dist.init_process_group("nccl")
        model = nn.Sequential(_mlp(), _mlp()).cuda()
        full = {n: p.numel() for n, p in model.named_parameters()}
        for block in model:
            fully_shard(block)
        fully_shard(model)
        local = {n: p.to_local().numel() for n, p in model.named_parameters()}
        _, ops = _step(model, model)
    assert local == {n: v // 4 for n, v in full.items()}
    block_bytes = sum(full.values()) * 4 // 2
    coll = _collectives(ops)
    gathers = [c for c in coll if c[0] == "c10d._allgather_base_"]
    scatters = [c for c in coll if c[0] == "c10d._reduce_scatter_base_"]
    # each block gathered before its forward and again before its backward; its gradients reduce-scattered
    assert sum(c[2] for c in gathers if c[1] == "forward") == 2
    assert sum(c[2] for c in gathers if c[1] == "backward") == 2
    assert sum(c[2] for c in scatters) == 2
    assert {c[3] for c in coll} == {block_bytes}
    assert {(c[4], c[5]) for c in coll} == {(4, 1)}


def test_fsdp2_gathers_on_its_own_stream_and_the_allocator_keeps_a_pool_per_stream():
    from collections import Counter

    from torch.distributed.fsdp import fully_shard

    from ccprof.profiler.memory import MemoryLedger
    with dry_run(cuda=True, world=(4, 1)):
        dist.init_process_group("nccl")
        model = nn.Sequential(_mlp(), _mlp()).cuda()
        block_bytes = sum(p.numel() for p in model.parameters()) * 4 // 2
        for block in model:
            fully_shard(block)
        fully_shard(model)
        opt = torch.optim.AdamW(model.parameters())
        led = MemoryLedger({"": model}, [opt], torch.device("cpu"))   # a dry run's tensors are CPU fakes
        led.start()
        model(torch.randn(8, 64, device="cuda")).square().mean().backward()
        opt.step()
        events = list(led._events)
        memory, _ = led.stop()
    by_stream = {s: Counter(n for what, _, n, st in events if what == "alloc" and st == s)
                 for s in {e[3] for e in events}}
    side = [c for s, c in by_stream.items() if s != 0]
    # FSDP2's all-gather outputs (each block's parameters in full: twice in forward, twice in backward)
    # are made on its all-gather stream, its reduce-scatter outputs (one shard per block) on another
    assert Counter({block_bytes: 4}) in side and Counter({block_bytes // 4: 2}) in side
    # every request is under 1 MiB: each of the three streams opens a 2 MiB small-pool segment of its
    # own, where one stream would have held all of them in one
    assert memory.reserved_peak_bytes == 3 * (2 << 20)


def test_a_node_local_group_spans_one_node_and_a_comm_hook_gets_its_tensors_back():
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    with dry_run(cuda=True, world=(4, 2)):
        dist.init_process_group("nccl")
        node = dist.new_group(list(range(4)))
        model = _mlp().cuda()
        ddp = nn.parallel.DistributedDataParallel(model, process_group=node)
        ddp.register_comm_hook(node, default_hooks.allreduce_hook)     # reads the reduced bucket back
        _, ops = _step(model, ddp)
    assert {(c[4], c[5]) for c in _collectives(ops)} == {(4, 1)}


def test_tensor_parallel_inside_fsdp_on_a_two_dimensional_mesh():
    """Colwise/Rowwise tensor parallelism over the 4 GPUs of a node, FSDP2 across the 2 nodes: each
    rank keeps 1/8 of each Linear, the row-parallel output is all-reduced within the node, the
    FSDP gathers cross the nodes."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
    with dry_run(cuda=True, world=(4, 2)):
        mesh = init_device_mesh("cuda", (2, 4), mesh_dim_names=("dp", "tp"))     # starts the process group
        model = _mlp().cuda()
        full = {n: p.numel() for n, p in model.named_parameters()}
        parallelize_module(model, mesh["tp"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
        fully_shard(model, mesh=mesh["dp"])
        local = {n: p.to_local().numel() for n, p in model.named_parameters()}
        _, ops = _step(model, model)
    assert local["0.weight"] == full["0.weight"] // 8 and local["2.weight"] == full["2.weight"] // 8
    rows = {(o.op, o.attrs.get("group"), o.attrs.get("nodes")) for o in ops if "c10d" in o.op}
    assert ("_c10d_functional.all_reduce", 4, 1) in rows          # tensor parallel: within the node
    assert ("c10d._allgather_base_", 2, 2) in rows                  # FSDP: across the nodes


def test_fsdp1_wraps_each_block_and_regathers_it_for_backward():
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    with dry_run(cuda=True, world=(4, 1)) as log:
        dist.init_process_group("nccl")
        model = nn.Sequential(_mlp(), _mlp())
        total = sum(p.numel() for p in model.parameters())
        wrapped = FSDP(nn.Sequential(*(FSDP(b, device_id=0) for b in model)), device_id=0)
        local = sum(p.numel() for p in wrapped.parameters())
        _, ops = _step(model, wrapped)
    assert local == total // 4
    gathers = [o for o in ops if o.op == "c10d.allgather_"]
    assert {o.phase for o in gathers} == {"forward", "backward"}            # resharded after forward
    assert {(o.attrs["group"], o.attrs["nodes"]) for o in ops if o.op.startswith("c10d.")} == {(4, 1)}
    assert any("FullyShardedDataParallel(device_id=0)" in s.what for s in describe(log).stand_ins)


def test_objects_between_ranks_are_rank_zeros_and_one_received_from_another_rank_stops_the_run():
    import pytest

    from ccprof.profiler.dryrun import DryRunUnsupported
    with dry_run(cuda=True, world=(4, 1)) as log:
        dist.init_process_group("nccl")
        gathered = [None] * 4
        dist.all_gather_object(gathered, {"tokens": 7})
        config = ["rank 0's"]
        dist.broadcast_object_list(config, src=0)
        with pytest.raises(DryRunUnsupported, match="recv_object_list"):
            dist.recv_object_list([None], src=1)
    assert gathered == [{"tokens": 7}] * 4 and config == ["rank 0's"]
    assert any(s.what.startswith("all_gather_object") for s in describe(log).stand_ins)


def test_zero_redundancy_optimizer_keeps_one_ranks_state_and_broadcasts_the_updated_parameters():
    from torch.distributed.optim import ZeroRedundancyOptimizer
    with dry_run(cuda=True, world=(4, 1)):
        dist.init_process_group("nccl")
        model = nn.Sequential(*(nn.Linear(64, 64) for _ in range(4))).cuda()
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=torch.optim.AdamW)
        fp = FlopPass({"": model})
        fp.start()
        ddp(torch.randn(8, 64, device="cuda")).square().mean().backward()
        fp.set_phase("optimizer")
        opt.step()
        _, ops = fp.stop()
        held = {id(p) for p in opt.optim.state}
    params = list(model.parameters())
    assert 0 < len(held) < len(params)                       # rank 0 steps its own partition only
    broadcast = sum(o.count * o.attrs["bytes"] for o in ops if o.op == "c10d.broadcast_" and o.phase == "optimizer")
    assert broadcast == sum(p.numel() * 4 for p in params)   # every parameter from the rank that owns it
