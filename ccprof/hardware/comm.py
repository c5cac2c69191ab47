"""Collectives of data-parallel training: what DDP and FSDP add to a step on N GPUs.

A ring all-reduce of ``B`` bytes over ``N`` GPUs moves ``2(N-1)/N x B`` through each GPU's
link, in ``2(N-1)`` latency-bound hops per message (Patarasuk & Yuan 2009; NCCL's "bus
bandwidth" convention, nccl-tests PERFORMANCE.md). DDP buckets the gradients (25 MB by
default) and all-reduces each bucket as soon as backward has produced it, so only what does not
fit under the rest of backward shows: at least the last bucket, which starts when backward ends
(Li et al., VLDB 2020). FSDP (ZeRO-3) all-gathers each layer's parameters before its forward and
again before its backward, and reduce-scatters its gradients: 3 x (N-1)/N x the parameter bytes,
overlapped with compute the same way. ZeRO-1/2 move what DDP moves (a reduce-scatter and an
all-gather instead of an all-reduce).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ccprof.hardware.catalog import GpuSpec

__all__ = ["NCCL_BUS_EFF", "HOP_LATENCY_S", "INTERCONNECT_FALLBACK_BYTES_PER_S", "DDP_BUCKET_BYTES",
           "CommCost", "ring_allreduce_s", "ddp_comm", "fsdp_comm", "link_bytes_per_s"]

# Share of the link's one-way bandwidth NCCL's ring reaches on large messages. nccl-tests on a
# DGX A100 report ~230 GB/s all-reduce bus bandwidth over NVLink 3 (300 GB/s each way), ~0.77;
# taken for every link. *Unverified* for PCIe-only and AMD machines.
NCCL_BUS_EFF = 0.77
# One ring hop's latency (a few microseconds over NVLink or PCIe; NCCL's LL protocol). Stated.
HOP_LATENCY_S = 5e-6
# Without a catalog interconnect: PCIe 4.0 x16, 32 GB/s per direction (PCI-SIG).
INTERCONNECT_FALLBACK_BYTES_PER_S = 32e9
# DDP's default bucket_cap_mb=25 (torch.nn.parallel.DistributedDataParallel).
DDP_BUCKET_BYTES = 25 * 2 ** 20


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


def ring_allreduce_s(nbytes: float, n_gpus: int, spec: GpuSpec, *, messages: int = 1) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` in ``messages`` pieces over ``n_gpus``."""
    if n_gpus <= 1 or nbytes <= 0:
        return 0.0
    n = n_gpus
    wire = 2.0 * (n - 1) / n * nbytes / (NCCL_BUS_EFF * link_bytes_per_s(spec))
    return wire + messages * 2 * (n - 1) * HOP_LATENCY_S


def ddp_comm(grad_bytes: float, n_gpus: int, spec: GpuSpec, backward_s: float,
             bucket_bytes: float = DDP_BUCKET_BYTES) -> CommCost:
    """DDP's gradient all-reduce on ``n_gpus``, overlapped with ``backward_s`` of backward.

    ``exposed = max(last bucket, total - backward)``: buckets reduce while backward runs, the
    last one only after it.
    """
    buckets = max(1, math.ceil(grad_bytes / bucket_bytes))
    total = ring_allreduce_s(grad_bytes, n_gpus, spec, messages=buckets)
    last = ring_allreduce_s(min(grad_bytes, bucket_bytes), n_gpus, spec)
    exposed = max(last, total - backward_s) if n_gpus > 1 else 0.0
    return CommCost(total, exposed, 2.0 * (n_gpus - 1) / max(n_gpus, 1) * grad_bytes, link_bytes_per_s(spec),
                    f"ring all-reduce of {grad_bytes / 2**20:.0f} MiB of gradients in {buckets} bucket(s)")


def fsdp_comm(param_bytes: float, grad_bytes: float, n_gpus: int, spec: GpuSpec, compute_s: float) -> CommCost:
    """FSDP's all-gathers (forward and backward) and gradient reduce-scatter, overlapped with compute."""
    if n_gpus <= 1:
        return CommCost(0.0, 0.0, 0.0, link_bytes_per_s(spec), "one GPU: no collectives")
    frac = (n_gpus - 1) / n_gpus
    moved = frac * (2.0 * param_bytes + grad_bytes)
    total = moved / (NCCL_BUS_EFF * link_bytes_per_s(spec)) + 3 * (n_gpus - 1) * HOP_LATENCY_S
    exposed = max(0.0, total - compute_s)
    return CommCost(total, exposed, moved, link_bytes_per_s(spec),
                    "all-gather of the parameters in forward and backward, reduce-scatter of the gradients")


# ---- provisional (replaced by the catalog-network version) -------------------------------
_KINDS = {"allreduce": "all_reduce", "all_reduce": "all_reduce", "allgather": "all_gather",
          "all_gather": "all_gather", "reduce_scatter": "reduce_scatter", "broadcast": "broadcast",
          "reduce": "reduce", "alltoall": "all_to_all", "all_to_all": "all_to_all", "send": "send",
          "recv": "recv", "gather": "gather", "scatter": "scatter", "barrier": "barrier"}


def collective_kind(op: str) -> str | None:
    ns, _, name = op.partition(".")
    if ns not in ("c10d", "_c10d_functional") or name.startswith(("wait", "_wrap")):
        return None
    core = name.strip("_").replace("_base", "").replace("_coalesced", "").replace("_into_tensor", "")
    core = core.replace("_tensor", "").replace("_single", "")
    return _KINDS.get(core)


def collective_s(kind: str, nbytes: float, group_size: int, spec: GpuSpec, *, nodes: int = 1) -> float:
    n = group_size
    if n <= 1 or nbytes <= 0:
        return 0.0
    factor = {"all_reduce": 2.0 * (n - 1) / n, "broadcast": 1.0, "reduce": 1.0}.get(kind, (n - 1) / n)
    return factor * nbytes / (NCCL_BUS_EFF * link_bytes_per_s(spec)) + 2 * (n - 1) * HOP_LATENCY_S
