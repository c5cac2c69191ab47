"""ccprof.hardware.comm: one collective's seconds on one node and across nodes (NCCL's ring model and
nccl-tests' bus-bandwidth convention), the c10d op names it costs, and DDP/FSDP on top of it."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed  # noqa: F401  (registers torch.ops.c10d)
import torch.distributed._functional_collectives  # noqa: F401  (registers torch.ops._c10d_functional)

from ccprof.hardware import load_catalog
from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.comm import (
    HOP_LATENCY_S,
    KINDS,
    NCCL_BUS_EFF,
    NETWORK_BUS_EFF,
    NETWORK_HOP_LATENCY_S,
    bus_bytes_per_s,
    collective_kind,
    collective_s,
    ddp_comm,
    fsdp_comm,
    ring_allreduce_s,
)

# NVLink 600 GB/s both ways (300 GB/s one way), nodes of 8 GPUs with 100 Gbit/s each (12.5 GB/s)
NET = GpuSpec("net", "Net", memory_bytes=80 * 10**9, bandwidth_bytes_per_s=2e12, peak_flops={"fp32": 20e12},
              interconnect_bytes_per_s=600e9, gpus_per_node=8, network_bytes_per_s_per_gpu=12.5e9)
LONE = dataclasses.replace(NET, id="lone", gpus_per_node=None, network_bytes_per_s_per_gpu=None)
INTRA = NCCL_BUS_EFF * 300e9                     # 231 GB/s bus bandwidth inside a node
GB = 1e9


def test_one_node_follows_the_bus_bandwidth_factors_and_ring_steps():
    # 8 GPUs, 1 GB; factor x bytes / (0.77 x 300 GB/s) + ring steps x 5 us
    assert collective_s("all_reduce", GB, 8, NET) == pytest.approx(2 * 7 / 8 * GB / INTRA + 14 * HOP_LATENCY_S)
    assert collective_s("all_gather", GB, 8, NET) == pytest.approx(7 / 8 * GB / INTRA + 7 * HOP_LATENCY_S)
    assert collective_s("reduce_scatter", GB, 8, NET) == collective_s("all_gather", GB, 8, NET)
    assert collective_s("broadcast", GB, 8, NET) == pytest.approx(GB / INTRA + 7 * HOP_LATENCY_S)
    assert collective_s("reduce", GB, 8, NET) == collective_s("broadcast", GB, 8, NET)
    assert collective_s("all_to_all", GB, 8, NET) == pytest.approx(7 / 8 * GB / INTRA + 7 * HOP_LATENCY_S)
    assert collective_s("gather", GB, 8, NET) == collective_s("scatter", GB, 8, NET) == collective_s(
        "all_to_all", GB, 8, NET)
    assert collective_s("send", GB, 8, NET) == pytest.approx(GB / INTRA + HOP_LATENCY_S)
    assert collective_s("recv", GB, 2, NET) == collective_s("send", GB, 2, NET)
    assert collective_s("barrier", 0, 8, NET) == pytest.approx(14 * HOP_LATENCY_S)      # latency only
    # one node of more GPUs than the catalog's node (a DGX-2 has 16) is the user's to say
    assert collective_s("all_to_all", GB, 16, NET) == pytest.approx(15 / 16 * GB / INTRA + 15 * HOP_LATENCY_S)
    # one GPU, or nothing to move, costs nothing
    assert collective_s("all_reduce", GB, 1, NET) == 0.0 and collective_s("all_gather", 0, 8, NET) == 0.0
    # the old entry point is the same all-reduce, plus a latency per extra message
    assert ring_allreduce_s(GB, 8, NET, messages=3) == pytest.approx(
        collective_s("all_reduce", GB, 8, NET) + 2 * 14 * HOP_LATENCY_S)


def test_across_nodes_the_network_of_a_node_bounds_the_ring_and_its_crossings_pay_network_latency():
    # 16 GPUs on 2 nodes of 8: the ring runs one channel per GPU's network share, so the network side
    # moves 8 x 12.5 GB/s x 0.86 = 86 GB/s, below the 231 GB/s of NVLink
    net16 = NETWORK_BUS_EFF * 8 * 12.5e9
    assert bus_bytes_per_s(16, NET, nodes=2) == pytest.approx(net16) and net16 == pytest.approx(86e9)
    # all-reduce: 2 x 15/16 x 1 GB / 86 GB/s; 30 ring steps, 2 of them across nodes
    assert collective_s("all_reduce", GB, 16, NET, nodes=2) == pytest.approx(
        2 * 15 / 16 * GB / net16 + 28 * HOP_LATENCY_S + 2 * NETWORK_HOP_LATENCY_S)
    # all-gather over 4 nodes (32 GPUs): 31 steps, 3 across nodes
    assert collective_s("all_gather", GB, 32, NET, nodes=4) == pytest.approx(
        31 / 32 * GB / net16 + 28 * HOP_LATENCY_S + 3 * NETWORK_HOP_LATENCY_S)
    # one GPU per node: no NVLink in the ring, each GPU's own network share
    assert bus_bytes_per_s(4, NET, nodes=4) == pytest.approx(NETWORK_BUS_EFF * 12.5e9)
    # all-to-all does not ring: what leaves the node (8 of 16 shares) goes through each GPU's own share
    a2a = max(7 / 16 * GB / INTRA, 8 / 16 * GB / (NETWORK_BUS_EFF * 12.5e9))
    assert collective_s("all_to_all", GB, 16, NET, nodes=2) == pytest.approx(
        a2a + 7 * HOP_LATENCY_S + 8 * NETWORK_HOP_LATENCY_S)
    # a message to another node goes through one GPU's share of the network
    assert collective_s("send", GB, 2, NET, nodes=2) == pytest.approx(
        GB / (NETWORK_BUS_EFF * 12.5e9) + NETWORK_HOP_LATENCY_S)
    # where the network is faster than NVLink's share, NVLink bounds the ring
    fast = dataclasses.replace(NET, network_bytes_per_s_per_gpu=400e9)
    assert bus_bytes_per_s(16, fast, nodes=2) == pytest.approx(INTRA)


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_group_is_slower_spread_over_nodes(kind):
    group = 2 if kind in ("send", "recv") else 8
    one = collective_s(kind, GB, group, NET)
    two = collective_s(kind, GB, group, NET, nodes=2)
    assert two > one > 0.0
    # also on the catalog's fastest node (p5.48xlarge: 3,200 Gbps EFA for 8 H100s)
    h100 = load_catalog(user=False)["h100-sxm"]
    assert collective_s(kind, GB, group, h100, nodes=2) > collective_s(kind, GB, group, h100)


def test_nodes_need_a_network_figure():
    with pytest.raises(ValueError, match="lone has no network figure in the catalog.*--catalog FILE"):
        collective_s("all_reduce", GB, 16, LONE, nodes=2)
    with pytest.raises(ValueError, match="no network figure"):
        collective_s("barrier", 0, 16, LONE, nodes=2)
    with pytest.raises(ValueError, match="no network figure"):
        ddp_comm(GB, 16, LONE, backward_s=1.0, nodes=2)
    with pytest.raises(ValueError, match="no network figure"):
        fsdp_comm(GB, GB, 16, load_catalog(user=False)["h100-pcie"], compute_s=1.0, nodes=2)
    assert collective_s("all_reduce", GB, 8, LONE) > 0.0               # one node needs none
    # the world is the caller's: 16 a node although the catalog's node holds 8; an uneven split
    # (3 GPUs over 2 nodes) counts the smaller share, one GPU's network
    assert bus_bytes_per_s(32, NET, nodes=2) == pytest.approx(min(INTRA, NETWORK_BUS_EFF * 16 * 12.5e9))
    assert bus_bytes_per_s(3, NET, nodes=2) == pytest.approx(NETWORK_BUS_EFF * 12.5e9)
    with pytest.raises(ValueError, match="unknown collective 'allreduce'"):
        collective_s("allreduce", GB, 8, NET)


def test_ddp_and_fsdp_are_built_on_collective_s():
    grads = 3 * 25 * 2**20
    d = ddp_comm(grads, 16, NET, backward_s=0.0, nodes=2)
    assert d.total_s == pytest.approx(ring_allreduce_s(grads, 16, NET, messages=3, nodes=2))
    assert d.exposed_s == pytest.approx(d.total_s) and "over 2 nodes" in d.what
    assert d.link_bytes_per_s == pytest.approx(8 * 12.5e9)      # the node's network bounds the ring
    assert ddp_comm(grads, 8, NET, 0.0, nodes=2).exposed_s > ddp_comm(grads, 8, NET, 0.0).exposed_s
    f = fsdp_comm(GB, 2 * GB, 16, NET, compute_s=0.0, nodes=2)
    assert f.total_s == pytest.approx(2 * collective_s("all_gather", GB, 16, NET, nodes=2)
                                      + collective_s("reduce_scatter", 2 * GB, 16, NET, nodes=2))
    assert f.bytes_per_gpu == pytest.approx(15 / 16 * 4 * GB)
    # one node: the same figures as before the network existed (moved / (0.77 x link) + 3(n-1) hops)
    f1 = fsdp_comm(GB, GB, 8, NET, compute_s=0.0)
    assert f1.total_s == pytest.approx(7 / 8 * 3 * GB / INTRA + 3 * 7 * HOP_LATENCY_S)
    assert f1.link_bytes_per_s == 300e9


C10D = {
    "c10d.allreduce_": "all_reduce", "c10d.allreduce_coalesced_": "all_reduce", "c10d.allgather_": "all_gather",
    "c10d._allgather_base_": "all_gather", "c10d.allgather_coalesced_": "all_gather",
    "c10d.allgather_into_tensor_coalesced_": "all_gather", "c10d.reduce_scatter_": "reduce_scatter",
    "c10d._reduce_scatter_base_": "reduce_scatter", "c10d.reduce_scatter_tensor_coalesced_": "reduce_scatter",
    "c10d.broadcast_": "broadcast", "c10d.reduce_": "reduce", "c10d.alltoall_": "all_to_all",
    "c10d.alltoall_base_": "all_to_all", "c10d.send": "send", "c10d.recv_": "recv",
    "c10d.recv_any_source_": "recv", "c10d.barrier": "barrier", "c10d.monitored_barrier_": "barrier",
    "c10d.gather_": "gather", "c10d.scatter_": "scatter",
    "_c10d_functional.all_reduce": "all_reduce", "_c10d_functional.all_reduce_": "all_reduce",
    "_c10d_functional.all_reduce_coalesced": "all_reduce", "_c10d_functional.all_reduce_coalesced_": "all_reduce",
    "_c10d_functional.all_gather_into_tensor": "all_gather",
    "_c10d_functional.all_gather_into_tensor_coalesced": "all_gather",
    "_c10d_functional.all_gather_into_tensor_out": "all_gather",
    "_c10d_functional.reduce_scatter_tensor": "reduce_scatter",
    "_c10d_functional.reduce_scatter_tensor_coalesced": "reduce_scatter",
    "_c10d_functional.reduce_scatter_tensor_out": "reduce_scatter",
    "_c10d_functional.all_to_all_single": "all_to_all", "_c10d_functional.broadcast": "broadcast",
    "_c10d_functional.broadcast_": "broadcast", "_c10d_functional.isend": "send", "_c10d_functional.irecv": "recv",
    "_c10d_functional.batch_p2p_ops": "send",
    "_c10d_functional_autograd.all_gather_into_tensor": "all_gather",
    "_c10d_functional_autograd.reduce_scatter_tensor": "reduce_scatter",
    "_c10d_functional_autograd.all_to_all_single": "all_to_all",
}
NO_TRANSFER = {"_c10d_functional.wait_tensor", "c10d_functional.wait_tensor", "c10d.check_for_nan",
               "_c10d_functional._wrap_tensor_autograd"}


def test_collective_kind_names_every_c10d_op_of_this_torch():
    for op, kind in C10D.items():
        assert collective_kind(op) == kind, op
    for op in NO_TRANSFER | {"aten.mm", "aten.add_", "mm", ""}:
        assert collective_kind(op) is None, op
    # torch's spellings: with an overload, with ::
    assert collective_kind("c10d.allreduce_.default") == "all_reduce"
    assert collective_kind("_c10d_functional::all_gather_into_tensor") == "all_gather"
    # every collective op this torch registers is costed or deliberately moves nothing
    names = {n.replace("::", ".") for n in torch._C._dispatch_get_all_op_names()
             if n.split("::")[0] in ("c10d", "_c10d_functional", "c10d_functional", "_c10d_functional_autograd")}
    assert names and names <= set(C10D) | NO_TRANSFER | {n.replace("_c10d_functional.", "c10d_functional.")
                                                          for n in C10D}, sorted(names - set(C10D) - NO_TRANSFER)
    assert all(collective_kind(n) in KINDS for n in names - NO_TRANSFER)


def _spanning(nodes: int):
    from ccprof.artefacts.profile import OpCost
    from tests.helpers.profiles import hand_profile
    base = hand_profile()
    nbytes = 2**20
    row = OpCost("c10d.allreduce_", "float32", 4, 0, 4 * nbytes, 4 * nbytes, "backward", shapes=[[nbytes // 4]],
                 out_shapes=[[nbytes // 4]], attrs={"bytes": nbytes, "group": 8 * nodes, "nodes": nodes})
    return dataclasses.replace(base, ops=base.ops + [row])


def test_the_cost_stage_leaves_out_gpus_without_a_network_when_collectives_span_nodes():
    from ccprof.hardware import attach
    p = attach(_spanning(2), gpu="h100-sxm")
    assert {"h100-pcie", "rtx-4090"}.isdisjoint(p.projection) and {"h100-sxm", "l4", "mi300x"} <= set(p.projection)
    assert p.reasons["network"].startswith("h100-pcie, rtx-4090 not projected: the script's collectives span 2 nodes")
    assert p.cost is not None and p.cost.gpu == "h100-sxm"
    with pytest.raises(ValueError, match="--gpu h100-pcie: the script's collectives span 2 nodes.*--catalog FILE"):
        attach(_spanning(2), gpu="h100-pcie")
    one = attach(_spanning(1), gpu="h100-pcie")                # one node: every GPU, no note
    assert set(one.projection) == set(load_catalog()) and "network" not in one.reasons
