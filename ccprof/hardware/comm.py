"""Collectives: what one collective costs on N GPUs over one or several nodes, and what DDP and FSDP add.

One function, :func:`collective_s`, costs every collective (the cost model calls it for each recorded
c10d op; :func:`collective_kind` maps the op's name to its kind). It follows NCCL's ring model and
nccl-tests' "bus bandwidth" convention (nccl-tests PERFORMANCE.md): a collective of ``B`` bytes over
``n`` GPUs moves ``factor x B`` through each GPU's link, with ``factor`` ``2(n-1)/n`` for all-reduce,
``(n-1)/n`` for all-gather, reduce-scatter and all-to-all, ``1`` for broadcast and reduce (pipelined
ring), and takes ``factor x B / bus bandwidth`` plus one latency per ring step (Patarasuk & Yuan
2009; NCCL's own tuning model, src/graph/tuning.cc, counts the steps the same way).

Several nodes: the ring crosses the network. NCCL runs one ring (channel) per NIC, so with ``g`` of
the group's GPUs on each node the network side of the ring moves ``g x`` one GPU's network share at
once (NCCL's tuning model: bus bandwidth = channels x per-channel network speed); the bus bandwidth
is the smaller of that and the intra-node link's. The steps that cross nodes (``2(nodes-1)`` of an
all-reduce's ``2(n-1)``, ``nodes-1`` of an all-gather's) pay the network latency. All-to-all,
gather and scatter do not ring: each GPU's own share of the network carries what leaves its node.
Rings only: NCCL picks its tree all-reduce where the ring's latency (linear in the GPUs) dominates, with
``log2(nodes)`` network steps, so small messages over many nodes are costed on the high side here.

DDP buckets the gradients (25 MB by default) and all-reduces each bucket as soon as backward has
produced it, so only what does not fit under the rest of backward shows: at least the last bucket,
which starts when backward ends (Li et al., VLDB 2020). FSDP (ZeRO-3) all-gathers each layer's
parameters before its forward and again before its backward, and reduce-scatters its gradients:
3 x (N-1)/N x the parameter bytes, overlapped with compute the same way. ZeRO-1/2 move what DDP
moves (a reduce-scatter and an all-gather instead of an all-reduce).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ccprof.hardware.catalog import GpuSpec

__all__ = ["NCCL_BUS_EFF", "HOP_LATENCY_S", "NETWORK_BUS_EFF", "NETWORK_HOP_LATENCY_S",
           "INTERCONNECT_FALLBACK_BYTES_PER_S", "DDP_BUCKET_BYTES", "KINDS", "CommCost", "NoNetworkError", "collective_s",
           "collective_kind", "bus_bytes_per_s", "ring_allreduce_s", "ddp_comm", "fsdp_comm", "link_bytes_per_s"]

# Share of the link's one-way bandwidth NCCL's ring reaches on large messages. nccl-tests on a
# DGX A100 report ~230 GB/s all-reduce bus bandwidth over NVLink 3 (300 GB/s each way), ~0.77;
# taken for every link. *Unverified* for PCIe-only and AMD machines.
NCCL_BUS_EFF = 0.77
# One ring hop's latency (a few microseconds over NVLink or PCIe; NCCL's LL protocol). Stated.
HOP_LATENCY_S = 5e-6
# Share of the network's one-way bandwidth NCCL's ring reaches between nodes: two 8 x A100 nodes
# with 4 x 200 Gb/s HDR InfiniBand each (100 GB/s per node) measured 86 GB/s all-reduce bus
# bandwidth (NVIDIA/nccl-tests issue #175, 2023-10; #100 reports 91 GB/s on the same network).
# Measured on InfiniBand; *unverified* for AWS EFA and RoCE.
NETWORK_BUS_EFF = 0.86
# One ring step's latency over the network: NCCL's tuning model's figure for a ring step with its
# Simple protocol over the network, 9.6 us (hwLat[NET][Ring][Simple], src/graph/tuning.cc), against
# 3.4 us over NVLink.
NETWORK_HOP_LATENCY_S = 9.6e-6
# Without a catalog interconnect: PCIe 4.0 x16, 32 GB/s per direction (PCI-SIG).
INTERCONNECT_FALLBACK_BYTES_PER_S = 32e9
# DDP's default bucket_cap_mb=25 (torch.nn.parallel.DistributedDataParallel).
DDP_BUCKET_BYTES = 25 * 2 ** 20

# kind -> (bytes through each GPU's link per byte of ``nbytes`` on n GPUs, does it ring?)
_RING = {"all_reduce": lambda n: 2.0 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
         "reduce_scatter": lambda n: (n - 1) / n, "broadcast": lambda n: 1.0, "reduce": lambda n: 1.0,
         "barrier": lambda n: 0.0}
# one GPU's link carries its own share (all-to-all: what each rank sends; gather/scatter: the root's)
_DIRECT = {"all_to_all", "gather", "scatter"}
_P2P = {"send", "recv"}
KINDS = tuple(_RING) + tuple(sorted(_DIRECT)) + tuple(sorted(_P2P))


class NoNetworkError(ValueError):
    """Collectives across nodes asked of a GPU whose catalog entry has no network figure."""


@dataclass(frozen=True)
class CommCost:
    """Communication of one step: total collective seconds, and what backward cannot hide."""
    total_s: float
    exposed_s: float
    bytes_per_gpu: float
    link_bytes_per_s: float
    what: str


def link_bytes_per_s(spec: GpuSpec) -> float:
    """One-way bytes/s of the GPU's fastest link: half the catalog's (bidirectional) figure."""
    both = spec.interconnect_bytes_per_s
    return both / 2.0 if both else INTERCONNECT_FALLBACK_BYTES_PER_S


def _network_bytes_per_s(spec: GpuSpec, nodes: int) -> float:
    """One GPU's one-way network bytes/s; a ValueError that says what to add when the catalog has none."""
    if not spec.network_bytes_per_s_per_gpu:
        raise NoNetworkError(
            f"{spec.id} has no network figure in the catalog (network_gbit_s_per_gpu), so {nodes} nodes of it "
            "cannot be costed: add one for your cluster with --catalog FILE, e.g. "
            f"[gpu.{spec.id}] gpus_per_node = 8, network_gbit_s_per_gpu = 400")
    return spec.network_bytes_per_s_per_gpu


def _per_node(group_size: int, nodes: int) -> int:
    """The group's GPUs on each node: the smaller share when the split is uneven (NCCL's rings cross
    the nodes through as many network cards as the emptiest node lends them)."""
    return max(1, group_size // max(nodes, 1))


def bus_bytes_per_s(group_size: int, spec: GpuSpec, *, nodes: int = 1) -> float:
    """The ring's bus bandwidth (bytes/s) on ``group_size`` GPUs over ``nodes`` nodes.

    One node: the intra-node link x NCCL_BUS_EFF. Several: the smaller of that (when a node holds
    more than one of the group's GPUs) and the network of the group's GPUs on one node x
    NETWORK_BUS_EFF (NCCL runs a ring per NIC). Example: 16 H100 on 2 p5 nodes, 8 x 400 Gb/s:
    min(0.77 x 450 GB/s, 0.86 x 8 x 50 GB/s) = 344 GB/s.
    """
    intra = NCCL_BUS_EFF * link_bytes_per_s(spec)
    if nodes <= 1:
        return intra
    local = _per_node(group_size, nodes)
    net = NETWORK_BUS_EFF * local * _network_bytes_per_s(spec, nodes)
    return min(intra, net) if local > 1 else net


def _latency_s(kind: str, n: int, nodes: int) -> float:
    """Ring steps x their latency; the steps that cross nodes pay the network's (NCCL tuning.cc's count)."""
    if kind in _P2P:
        return NETWORK_HOP_LATENCY_S if nodes > 1 else HOP_LATENCY_S
    if kind in ("all_reduce", "barrier"):
        steps, inter = 2 * (n - 1), 2 * (nodes - 1)
    elif kind in ("broadcast", "reduce"):
        steps, inter = n - 1, nodes - 1
    else:                       # all_gather, reduce_scatter; all-to-all, gather, scatter: n-1 peers
        steps = n - 1
        inter = (n - n // nodes) if kind in _DIRECT else nodes - 1
    return (steps - inter) * HOP_LATENCY_S + inter * NETWORK_HOP_LATENCY_S


def collective_s(kind: str, nbytes: float, group_size: int, spec: GpuSpec, *, nodes: int = 1) -> float:
    """Seconds of one collective of ``kind`` over ``group_size`` GPUs spread evenly over ``nodes`` nodes.

    ``nbytes``: all_reduce, broadcast, reduce: the tensor; all_gather: the gathered (output) size;
    reduce_scatter: the input (unsharded) size; all_to_all: what each rank sends in all; gather and
    scatter: the root's whole (gathered) size; send/recv: the message, to a peer on another node when
    ``nodes > 1``; barrier: ignored (latency only).
    Output: ``factor x nbytes / bus bandwidth`` plus a latency per ring step (module docstring), 0.0
    for one GPU or no bytes. Raises ValueError for an unknown kind, and NoNetworkError (a ValueError)
    for ``nodes > 1`` on a GPU whose catalog entry has no network figure. The world is the caller's:
    a node may hold more GPUs than the catalog's ``gpus_per_node``, and an uneven split counts the
    smaller share per node.

    Example: ``collective_s("all_reduce", 1e9, 8, spec)`` on a 300 GB/s link =
    ``2 x 7/8 x 1e9 / (0.77 x 300e9) + 14 x 5 us``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown collective {kind!r}; one of {', '.join(KINDS)}")
    if nodes > 1:
        _network_bytes_per_s(spec, nodes)       # refuses a GPU without a network figure, whatever the kind
    if kind in _P2P:
        if nbytes <= 0:
            return 0.0
        bw = (NETWORK_BUS_EFF * _network_bytes_per_s(spec, nodes) if nodes > 1
              else NCCL_BUS_EFF * link_bytes_per_s(spec))
        return nbytes / bw + _latency_s(kind, 2, nodes)
    n = group_size
    if n <= 1 or (nbytes <= 0 and kind != "barrier"):
        return 0.0
    if kind in _DIRECT:
        local = _per_node(n, nodes)
        intra_s = (local - 1) / n * nbytes / (NCCL_BUS_EFF * link_bytes_per_s(spec))
        net_s = ((n - local) / n * nbytes / (NETWORK_BUS_EFF * _network_bytes_per_s(spec, nodes))
                 if nodes > 1 else 0.0)
        return max(intra_s, net_s) + _latency_s(kind, n, nodes)
    wire = _RING[kind](n) * max(nbytes, 0.0)
    return (wire / bus_bytes_per_s(n, spec, nodes=nodes) if wire else 0.0) + _latency_s(kind, n, nodes)


# c10d's op names (torch.ops.c10d, the ProcessGroup API) and the functional collectives'
# (torch.ops._c10d_functional, its autograd twins and the older c10d_functional), as torch 2.13 lists them
_C10D = {
    "allreduce_": "all_reduce", "allreduce_coalesced_": "all_reduce",
    "allgather_": "all_gather", "_allgather_base_": "all_gather", "allgather_coalesced_": "all_gather",
    "allgather_into_tensor_coalesced_": "all_gather",
    "reduce_scatter_": "reduce_scatter", "_reduce_scatter_base_": "reduce_scatter",
    "reduce_scatter_tensor_coalesced_": "reduce_scatter",
    "broadcast_": "broadcast", "reduce_": "reduce", "alltoall_": "all_to_all", "alltoall_base_": "all_to_all",
    "send": "send", "recv_": "recv", "recv_any_source_": "recv", "barrier": "barrier",
    "monitored_barrier_": "barrier", "gather_": "gather", "scatter_": "scatter",
}
_FUNCTIONAL = {
    "all_reduce": "all_reduce", "all_reduce_": "all_reduce", "all_reduce_coalesced": "all_reduce",
    "all_reduce_coalesced_": "all_reduce",
    "all_gather_into_tensor": "all_gather", "all_gather_into_tensor_coalesced": "all_gather",
    "all_gather_into_tensor_out": "all_gather",
    "reduce_scatter_tensor": "reduce_scatter", "reduce_scatter_tensor_coalesced": "reduce_scatter",
    "reduce_scatter_tensor_out": "reduce_scatter",
    "all_to_all_single": "all_to_all", "broadcast": "broadcast", "broadcast_": "broadcast",
    "isend": "send", "irecv": "recv", "batch_p2p_ops": "send",
}
_NAMESPACES = {"c10d": _C10D, "_c10d_functional": _FUNCTIONAL, "c10d_functional": _FUNCTIONAL,
               "_c10d_functional_autograd": _FUNCTIONAL}


def collective_kind(op: str) -> str | None:
    """The collective kind of a c10d op name, or None for an op that moves nothing.

    Takes ccprof's op names (``"c10d.allreduce_"``), with or without an overload (``".default"``) or
    torch's ``::``. None for non-collectives, ``_c10d_functional.wait_tensor`` (it waits, no transfer)
    and ``c10d.check_for_nan``. Example: ``collective_kind("_c10d_functional.all_gather_into_tensor")``
    -> ``"all_gather"``.
    """
    parts = op.replace("::", ".").split(".")
    if len(parts) < 2:
        return None
    return _NAMESPACES.get(parts[0], {}).get(parts[1])


def ring_allreduce_s(nbytes: float, n_gpus: int, spec: GpuSpec, *, messages: int = 1, nodes: int = 1) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` in ``messages`` pieces over ``n_gpus`` on ``nodes`` nodes."""
    if n_gpus <= 1 or nbytes <= 0:
        return 0.0
    return collective_s("all_reduce", nbytes, n_gpus, spec, nodes=nodes) + (messages - 1) * _latency_s(
        "all_reduce", n_gpus, nodes)


def _where(nodes: int) -> str:
    return f" over {nodes} nodes" if nodes > 1 else ""


def _bottleneck_bytes_per_s(n_gpus: int, spec: GpuSpec, nodes: int) -> float:
    """One-way bytes/s of what limits the ring: the intra-node link, or the network of one node's GPUs."""
    if nodes <= 1 or n_gpus <= 1:
        return link_bytes_per_s(spec)
    local = _per_node(n_gpus, nodes)
    net = local * _network_bytes_per_s(spec, nodes)
    return net if local == 1 or NETWORK_BUS_EFF * net < NCCL_BUS_EFF * link_bytes_per_s(spec) else link_bytes_per_s(spec)


def ddp_comm(grad_bytes: float, n_gpus: int, spec: GpuSpec, backward_s: float,
             bucket_bytes: float = DDP_BUCKET_BYTES, *, nodes: int = 1) -> CommCost:
    """DDP's gradient all-reduce on ``n_gpus`` (over ``nodes`` nodes), overlapped with ``backward_s`` of backward.

    ``exposed = max(last bucket, total - backward)``: buckets reduce while backward runs, the
    last one only after it.
    """
    buckets = max(1, math.ceil(grad_bytes / bucket_bytes))
    total = ring_allreduce_s(grad_bytes, n_gpus, spec, messages=buckets, nodes=nodes)
    last = ring_allreduce_s(min(grad_bytes, bucket_bytes), n_gpus, spec, nodes=nodes)
    exposed = max(last, total - backward_s) if n_gpus > 1 else 0.0
    return CommCost(total, exposed, 2.0 * (n_gpus - 1) / max(n_gpus, 1) * grad_bytes,
                    _bottleneck_bytes_per_s(n_gpus, spec, nodes),
                    f"ring all-reduce of {grad_bytes / 2**20:.0f} MiB of gradients in {buckets} bucket(s)"
                    + _where(nodes))


def fsdp_comm(param_bytes: float, grad_bytes: float, n_gpus: int, spec: GpuSpec, compute_s: float,
              *, nodes: int = 1) -> CommCost:
    """FSDP's all-gathers (forward and backward) and gradient reduce-scatter, overlapped with compute."""
    if n_gpus <= 1:
        return CommCost(0.0, 0.0, 0.0, link_bytes_per_s(spec), "one GPU: no collectives")
    frac = (n_gpus - 1) / n_gpus
    moved = frac * (2.0 * param_bytes + grad_bytes)
    total = (2 * collective_s("all_gather", param_bytes, n_gpus, spec, nodes=nodes)
             + collective_s("reduce_scatter", grad_bytes, n_gpus, spec, nodes=nodes))
    exposed = max(0.0, total - compute_s)
    return CommCost(total, exposed, moved, _bottleneck_bytes_per_s(n_gpus, spec, nodes),
                    "all-gather of the parameters in forward and backward, reduce-scatter of the gradients"
                    + _where(nodes))
