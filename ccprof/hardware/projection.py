"""Step time, bf16 step time, memory fit, MFU and HFU of a profile on every catalog GPU.

Each GPU's step is :func:`ccprof.hardware.step.cost_step` of the profile under the script's own
policy (what it would run there: ``translate.policy_for``), and again under bf16 autocast (fp16
on GPUs without bf16 units). Phase times (data, forward, backward, optimizer, other) sum to the
step and each says whether the device or the host sets it.

When the profile was taken on a catalog GPU, the measured step is the truth for that GPU
(``method="measured"``), and the model is recalibrated by it before projecting onto every other
GPU (``method="calibrated"``, the factors in ``detail["calibration"]``), so a systematic error of
the model on this workload does not carry over: by kernel class (GEMM, convolution, attention,
elementwise, ...) when the profile holds the kernels' measured device times (``kernel_s``, one
step under torch.profiler), else by phase from the measured phase times. Whatever the
calibrated model still cannot explain on the measured GPU is kept as host time on all of them.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from ccprof.artefacts.profile import GpuProjection, OpCost, Profile
from ccprof.artefacts.vocab import COMPUTE_PHASES, MATMUL_CLASSES
from ccprof.hardware import kernels as K
from ccprof.hardware.catalog import GpuSpec, match_device
from ccprof.hardware.comm import collective_kind
from ccprof.hardware.inputs import StepInputs, step_inputs
from ccprof.hardware.pipeline import PipelineStep, pipeline_step
from ccprof.hardware.step import PHASES, StepCost, cost_step
from ccprof.hardware.translate import Policy, policy_for, translate
from ccprof.units import fmt_bytes

__all__ = ["MEMORY_HEADROOM_FRAC", "CALIBRATION_BOUNDS", "usable_memory_bytes", "fits_memory", "MemoryFit",
           "memory_fit", "memory_fit_for", "peak_budget_bytes", "reserved_at", "communicators", "nccl_buffer_bytes", "CUDA_CONTEXT_BYTES",
           "MEMORY_FIT_SOURCES", "TENSORS_FIT_SOURCE", "FIT_SOURCES",
           "source_gpu", "half_dtype", "pipelined_step", "compute_peak", "mfu", "project", "spanned_nodes", "step_cost_for",
           "eval_s_for"]

# Memory must leave this fraction of the device free to "fit": the CUDA context
# (~0.3-0.5 GB), cuBLAS/cuDNN workspaces and caching-allocator fragmentation live there.
# 10% is the PyTorch TensorBoard plugin's threshold (peak memory > 90% -> act; pytorch/kineto tb_plugin).
MEMORY_HEADROOM_FRAC = 0.10
# A measured/modelled ratio outside these bounds says the model does not describe this step
# (or the measurement was disturbed): the factor is clamped and the detail says so.
CALIBRATION_BOUNDS = (0.25, 4.0)


# What a GPU holds beside PyTorch's caching allocator (not in torch.cuda.max_memory_reserved), for the
# fit of a profile whose allocations were replayed through the allocator (reserved_peak_bytes):
# - the CUDA context: the driver's state and the kernels it loads, ~300-400 MB with CUDA >= 11.7's lazy
#   module loading, the PyTorch default (PyTorch maintainers in pytorch/pytorch#107667 and #109888; over
#   1 GB before lazy loading); taken as 512 MiB.
CUDA_CONTEXT_BYTES = 512 * 2 ** 20
# - NCCL's buffers, per communicator (one per process group that ran a collective): for each channel and
#   each peer it receives from, one buffer per protocol: Simple NCCL_BUFFSIZE (4 MiB default, NCCL docs
#   "Environment Variables"), LL 512 KiB and LL128 4,915,200 B (NCCL src/init.cc DEFAULT_LL_BUFFSIZE,
#   DEFAULT_LL128_BUFFSIZE): 9.19 MiB, allocated as 10 MiB (2 MiB granules: the 10,485,760 B buffers
#   NCCL_DEBUG_SUBSYS=ALLOC shows in NVIDIA/nccl#1685).
NCCL_PROTO_BUFFERS_BYTES = (4 << 20) + (512 << 10) + 4_915_200
NCCL_BUFFER_GRANULE_BYTES = 2 << 20
# channels: NCCL's MAXCHANNELS, what it opens on H100 NVLink (NVIDIA/nccl#1685's logs); GPUs with fewer
# links open fewer, so the figure is on the high side for them. Peers per channel: the ring's one and the
# tree's two (its parent and child in a node's chain): 24 channels x 3 x 9.19 MiB = 694 MB, what
# NVIDIA/nccl#964 measured for a 4 x A100 group's all-reduce (688 MB).
NCCL_CHANNELS = 32
NCCL_PEERS_PER_CHANNEL = 3
MEMORY_FIT_SOURCES = [
    "NCCL docs, Environment Variables: NCCL_BUFFSIZE (4 MiB default), NCCL_MAX_NCHANNELS",
    "NCCL src/init.cc: DEFAULT_BUFFSIZE, DEFAULT_LL_BUFFSIZE, DEFAULT_LL128_BUFFSIZE",
    "NVIDIA/nccl#964 (688 MB for one 4 x A100 communicator's all-reduce), #1685 (32 channels, 10 MiB buffers on H100), "
    "#986 (memory grows with communicators and channels)",
    "pytorch/pytorch#107667, #109888 (CUDA context ~300-400 MB with lazy module loading)",
    "pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp at 001074d25084 (the reserved peak: the caching allocator's "
    "rules under the run's PYTORCH_ALLOC_CONF / PYTORCH_CUDA_ALLOC_CONF settings: default segments, or "
    "expandable_segments' one growing segment per stream and pool in 2 / 20 MiB pages; max_split_size_mb, "
    "roundup_power2_divisions) and c10/core/AllocatorConfig.cpp (which variable wins, how it is parsed)",
]
# what an advice that decides by the fit cites: the tensors' rule's 90% and the reserved rule's figures
TENSORS_FIT_SOURCE = ("PyTorch TensorBoard profiler plugin (pytorch/kineto tb_plugin) recommendations: peak memory > "
                      "90% of the device")
FIT_SOURCES = [TENSORS_FIT_SOURCE, *MEMORY_FIT_SOURCES]


def usable_memory_bytes(spec: GpuSpec, headroom_frac: float = MEMORY_HEADROOM_FRAC) -> int:
    """Device memory a job may fill under the tensors' rule: ``memory_bytes * (1 - headroom_frac)``."""
    return int(spec.memory_bytes * (1.0 - headroom_frac))


@dataclass(frozen=True)
class MemoryFit:
    """Whether one GPU holds the step, and each part of what it needs.

    ``rule`` is ``"reserved"`` (the caching allocator's reserved peak + NCCL's buffers + the CUDA
    context against the GPU's whole memory) or ``"tensors"`` (the tensors' peak against
    ``1 - MEMORY_HEADROOM_FRAC`` of it); ``parts`` name -> bytes (their sum is ``need_bytes``);
    ``margin_bytes`` = ``capacity_bytes - need_bytes`` (negative: over)."""
    fits: bool
    rule: str
    need_bytes: int
    capacity_bytes: int
    parts: dict[str, int]
    communicators: tuple[tuple[int, int], ...] = ()
    # the allocator settings the reserved peak was replayed under, in words ("" the defaults)
    allocator_rule: str = ""

    @property
    def margin_bytes(self) -> int:
        return self.capacity_bytes - self.need_bytes

    def says(self) -> str:
        """"fits, 3.07 GiB to spare of the 74.5 GiB on the GPU (reserved 70.0 GiB + NCCL buffers 960 MiB +
        CUDA context 512 MiB)", or "does not fit, ... over the ... usable (tensors ...)" under the tensors' rule:
        the verdict, the margin, the capacity and each part, as the report and the advisors word it."""
        names = {"reserved": "reserved", "nccl": "NCCL buffers", "cuda_context": "CUDA context", "tensors": "tensors"}
        # the run's allocator settings the reserved peak was replayed under, after its figure
        after = {"reserved": f" (caching allocator, {self.allocator_rule.split(';')[0]})"} if self.allocator_rule else {}
        # a part that is 0 (no collective: no NCCL buffers) is left out
        parts = " + ".join(f"{names.get(k, k)} {fmt_bytes(v)}{after.get(k, '')}"
                           for k, v in self.parts.items() if v or k == "tensors")
        of = "usable" if self.rule == "tensors" else "on the GPU"
        if self.fits:
            return f"fits, {fmt_bytes(self.margin_bytes)} to spare of the {fmt_bytes(self.capacity_bytes)} {of} ({parts})"
        return f"does not fit, {fmt_bytes(-self.margin_bytes)} over the {fmt_bytes(self.capacity_bytes)} {of} ({parts})"

    def as_dict(self) -> dict[str, Any]:
        """The figures, for a projection's or an advice's ``details``."""
        return {"rule": self.rule, "fits": self.fits, "parts": dict(self.parts), "need_bytes": self.need_bytes,
                "capacity_bytes": self.capacity_bytes, "margin_bytes": self.margin_bytes,
                "communicators": [list(g) for g in self.communicators]}


def nccl_buffer_bytes(group_ranks: int) -> int:
    """NCCL's buffers on one GPU for one communicator of ``group_ranks`` ranks (0 for a group of one:
    no peer to connect): channels x peers x the three protocols' buffers, in 2 MiB granules."""
    if group_ranks <= 1:
        return 0
    per_peer = -(-NCCL_PROTO_BUFFERS_BYTES // NCCL_BUFFER_GRANULE_BYTES) * NCCL_BUFFER_GRANULE_BYTES
    return NCCL_CHANNELS * NCCL_PEERS_PER_CHANNEL * per_peer


def communicators(profile: Profile | StepInputs) -> tuple[tuple[int, int], ...]:
    """(ranks, nodes) of each process group the step's collectives ran on, as their op rows record
    them (``attrs["group"]``, ``attrs["nodes"]``); two groups of the same size and span count once."""
    seen = {(int((o.attrs or {}).get("group", 0) or 0), int((o.attrs or {}).get("nodes", 1) or 1))
            for o in step_inputs(profile).ops if collective_kind(o.op)}
    return tuple(sorted(g for g in seen if g[0] > 1))


def memory_fit(peak_bytes: int, spec: GpuSpec, *, reserved_bytes: int | None = None,
               groups: tuple[tuple[int, int], ...] = (), headroom_frac: float = MEMORY_HEADROOM_FRAC,
               allocator_rule: str = "") -> MemoryFit:
    """Whether a step fits ``spec``, and by how much: the one rule every caller uses.

    With ``reserved_bytes`` (PyTorch's caching allocator's reserved peak, replayed from the step's
    allocations): it fits when reserved + NCCL's buffers for each communicator in ``groups`` ((ranks,
    nodes) pairs) + the CUDA context stay within the GPU's memory. Without it: when the tensors'
    ``peak_bytes`` stay within :func:`usable_memory_bytes` (the rest for the context, workspaces and
    fragmentation). An unknown peak (0) fits.

    Example: ``memory_fit(60 << 30, h100, reserved_bytes=70 << 30, groups=((8, 1),))`` -> parts
    reserved 70 GiB, nccl 960 MiB, cuda_context 512 MiB against the 80 GB (74.5 GiB): fits, margin 3.07 GiB.
    """
    if reserved_bytes:
        parts = {"reserved": int(reserved_bytes),
                 "nccl": sum(nccl_buffer_bytes(ranks) for ranks, _ in groups),
                 "cuda_context": CUDA_CONTEXT_BYTES}
        need, capacity, rule = sum(parts.values()), int(spec.memory_bytes), "reserved"
    else:
        parts = {"tensors": int(max(peak_bytes, 0))}
        need, capacity, rule = parts["tensors"], usable_memory_bytes(spec, headroom_frac), "tensors"
    return MemoryFit(fits=need <= capacity, rule=rule, need_bytes=need, capacity_bytes=capacity, parts=parts,
                     communicators=tuple(groups) if rule == "reserved" else (),
                     allocator_rule=allocator_rule if rule == "reserved" else "")


def reserved_at(reserved_bytes: int, peak_bytes: int, traced_peak_bytes: int) -> int:
    """The caching allocator's reserved peak at another tensor peak: moved by the same bytes (its overhead
    over the tensors, as traced, assumed unchanged), never below the tensors' peak.

    Example: reserved 76 GiB at a traced 60 GiB peak -> at a 56 GiB peak, 72 GiB."""
    return max(int(reserved_bytes) + int(peak_bytes) - int(traced_peak_bytes), int(peak_bytes))


def memory_fit_for(profile: Profile | StepInputs, spec: GpuSpec, peak_bytes: int | None = None,
                   groups: tuple[tuple[int, int], ...] | None = None) -> MemoryFit:
    """:func:`memory_fit` of a profile's step on ``spec``: the reserved rule where the profile has the
    allocator's replay (``ModelFacts.reserved_peak_bytes``: a dry run's), else the tensors' rule.

    ``peak_bytes``: another tensor peak for the same step (a tweak's projected peak, a planned
    world's shard); the reserved figure then moves by the same bytes (the allocator's overhead over
    the tensors, as traced, is assumed unchanged). ``groups``: the communicators ((ranks, nodes)) of
    a world the plan sets up instead of the ones the step's collectives ran on.

    Example: ``memory_fit_for(Profile.from_json("profile.json"), load_catalog()["h100-sxm"]).margin_bytes``."""
    inputs = step_inputs(profile)
    mf = inputs.model
    peak = mf.peak_bytes if peak_bytes is None else int(peak_bytes)
    reserved = mf.reserved_peak_bytes
    if reserved and peak_bytes is not None:
        reserved = reserved_at(reserved, peak, mf.peak_bytes)
    if groups is None:
        groups = communicators(inputs) if reserved else ()
    return memory_fit(peak, spec, reserved_bytes=reserved, groups=groups, allocator_rule=mf.allocator_rule)


def peak_budget_bytes(profile: Profile | StepInputs, spec: GpuSpec,
                      groups: tuple[tuple[int, int], ...] | None = None) -> int:
    """The largest tensor peak that :func:`memory_fit_for` ``(profile, spec, peak, groups)`` fits: the one rule
    inverted, for an advisor that searches the largest batch (or the fewest shards) that fit. The fit is
    monotone in the peak, so ``peak <= peak_budget_bytes(...)`` is exactly ``memory_fit_for(...).fits``.

    Tensors' rule: the usable bytes. Reserved rule: the GPU's memory less NCCL's buffers and the CUDA
    context is what the reserved figure may reach, and it runs the allocator's overhead over the tensors
    (reserved - peak, as traced; none when negative) above the peak.

    Example: H100 (80e9 B), reserved 70 GiB at a 60 GiB peak, one communicator of 8:
    80e9 - 960 MiB - 512 MiB - 10 GiB = 67,719,077,888 B (63.1 GiB)."""
    inputs = step_inputs(profile)
    peak = inputs.model.peak_bytes
    fit = memory_fit_for(inputs, spec, peak, groups)
    if fit.rule == "tensors":
        return fit.capacity_bytes
    reserved = fit.parts["reserved"]
    beside = fit.need_bytes - reserved                   # NCCL's buffers and the CUDA context
    return fit.capacity_bytes - beside - max(reserved - peak, 0)


def fits_memory(peak_bytes: int, spec: GpuSpec, headroom_frac: float = MEMORY_HEADROOM_FRAC) -> bool:
    """True when the tensors' ``peak_bytes`` are within :func:`usable_memory_bytes` (unknown peak, 0,
    fits): :func:`memory_fit`'s rule for a profile without the allocator's replay."""
    return memory_fit(peak_bytes, spec, headroom_frac=headroom_frac).fits


def source_gpu(profile: Profile | StepInputs, catalog: dict[str, GpuSpec]) -> str | None:
    """Catalog id of the GPU the profile was measured on, or None (CPU, or not in the catalog)."""
    dev = step_inputs(profile).device
    if dev.type != "cuda":
        return None
    if dev.catalog_id and dev.catalog_id in catalog:
        return dev.catalog_id
    return match_device(dev.name, catalog)


def half_dtype(spec: GpuSpec) -> str:
    """The 16-bit autocast dtype for ``spec``: bfloat16, or float16 where it has no bf16 units."""
    return "float16" if "bf16" not in spec.peak_flops and "fp16" in spec.peak_flops else "bfloat16"


def _matmul_dtype(inputs: StepInputs) -> str | None:
    """The dtype most of the step's matmul FLOPs ran in, as recorded (None without matmuls): 16-bit
    where the weights were cast for compute without autocast (FSDP2's MixedPrecisionPolicy keeps
    fp32 parameters and runs its matmuls in bf16)."""
    by_dtype: dict[str, int] = {}
    for op in inputs.ops:
        if op.flops and K.op_class(op.op) in MATMUL_CLASSES:
            by_dtype[op.dtype] = by_dtype.get(op.dtype, 0) + op.flops
    return max(by_dtype, key=by_dtype.__getitem__) if by_dtype else None


def compute_peak(profile: Profile | StepInputs, spec: GpuSpec, policy: Policy) -> tuple[float, str]:
    """(peak FLOP/s, key) the step's matmuls run at under ``policy``: MFU is measured against it.
    Without autocast, the dtype the recorded matmuls ran in (else the parameters')."""
    inputs = step_inputs(profile)
    dtype = policy.autocast or _matmul_dtype(inputs) or inputs.precision.param_dtype or "float32"
    unit = K.math_unit(dtype, spec, tf32=policy.tf32_matmul)
    key = {"tensor16": "bf16" if dtype == "bfloat16" and "bf16" in spec.peak_flops else "fp16",
           "tf32": "tf32", "simt": "fp32"}[unit]
    return K.peak_for(unit, dtype, spec), key


def mfu(flops_per_step: float, step_s: float | None, peak_flops: float) -> float | None:
    """FLOPs utilization: ``flops_per_step / step_s / peak`` (PaLM's MFU with model FLOPs)."""
    if not step_s or step_s <= 0 or peak_flops <= 0 or flops_per_step <= 0:
        return None
    return flops_per_step / step_s / peak_flops


def _measured_step_s(inputs: StepInputs) -> float | None:
    times = [t for t in inputs.measured.step_s if t and t > 0]
    return statistics.median(times) if times else None


def _flops_only_ops(inputs: StepInputs) -> list:
    """Without per-op records, one synthetic matmul carrying the step's FLOPs (a lower bound)."""
    flops = inputs.model.flops_per_step
    if not flops:
        return []
    p = inputs.precision
    dtype = p.autocast_dtype if p.autocast else (p.param_dtype or "float32")
    return [OpCost(op="aten.mm", dtype=dtype or "float32", count=1, flops=flops, phase="forward")]


def step_cost_for(profile: Profile | StepInputs, spec: GpuSpec, policy: Policy | None = None,
                  **kw: Any) -> StepCost:
    """:func:`cost_step` with the flops-only fallback for profiles without op records."""
    inputs = step_inputs(profile)
    if not inputs.ops and "ops" not in kw:
        kw["ops"] = _flops_only_ops(inputs)
    return cost_step(inputs, spec, policy, **kw)


def _clamp_factor(f: float, name: str, clamped: list[str]) -> float:
    """A measured/modelled factor kept within CALIBRATION_BOUNDS; ``name`` goes in ``clamped``
    when it was outside them."""
    lo, hi = CALIBRATION_BOUNDS
    if not lo <= f <= hi:
        clamped.append(name)
        return min(max(f, lo), hi)
    return f


def _class_factors(inputs: StepInputs, spec: GpuSpec) -> tuple[dict[str, float], list[str], dict[str, Any]]:
    """Measured/modelled device time by kernel class on the GPU the kernels were timed on."""
    measured: dict[str, float] = {}
    for op, s in inputs.measured.kernel_s.items():
        cls = K.op_class(op)
        measured[cls] = measured.get(cls, 0.0) + float(s)
    model: dict[str, float] = {}
    for k in translate(inputs, spec):
        model[k.cls] = model.get(k.cls, 0.0) + k.device_s
    factors: dict[str, float] = {}
    clamped: list[str] = []
    for cls, m in measured.items():
        d = model.get(cls, 0.0)
        if m > 0 and d > 0:
            factors[cls] = _clamp_factor(m / d, cls, clamped)
    return factors, clamped, {"measured_device_s": measured, "model_device_s": model}


def _calibration(inputs: StepInputs, src: StepCost, spec: GpuSpec) -> dict[str, Any]:
    """Measured/modelled factors on the GPU the profile ran on: by kernel class when its kernels
    were timed, else by phase."""
    if inputs.measured.kernel_s:
        factors_c, clamped_c, by = _class_factors(inputs, spec)
        if factors_c:
            out: dict[str, Any] = {"class_factors": factors_c, "factors": {}, "clamped": clamped_c, **by}
            recal = step_cost_for(inputs, spec, src.policy, class_factors=factors_c)
            step = _measured_step_s(inputs) or 0.0
            out["unexplained_s"] = max(0.0, step - recal.step_s)
            return out
    measured = inputs.measured.phase_s or {}
    factors: dict[str, float] = {}
    clamped: list[str] = []
    for ph in COMPUTE_PHASES:
        m, d = measured.get(ph, 0.0) or 0.0, src.phase_s.get(ph, 0.0)
        if m > 0 and d > 0:
            factors[ph] = _clamp_factor(m / d, ph, clamped)
    step = _measured_step_s(inputs) or 0.0
    out: dict[str, Any] = {"factors": factors, "clamped": clamped}
    if not factors and step and src.step_s > 0:
        # no phase times measured: the whole step is scaled (device and host alike)
        out["step_factor"] = _clamp_factor(step / src.step_s, "step", clamped)
    # what the calibrated model still cannot explain on the measured GPU (a stall, host work
    # it does not see) is taken as host time that every GPU pays
    out["unexplained_s"] = max(0.0, step - sum(_apply(src, out, residual=False).values()))
    return out


def _apply(sc: StepCost, calib: dict[str, Any], *, residual: bool = True) -> dict[str, float]:
    """Phase times of ``sc`` recalibrated by the measured GPU's factors (by phase; the class
    factors are applied when the step is costed, see :func:`project`)."""
    if "class_factors" in calib:
        phase = dict(sc.phase_s)
    elif "step_factor" in calib:
        phase = {ph: v * calib["step_factor"] for ph, v in sc.phase_s.items()}
    else:
        phase = sc.scaled({ph: calib["factors"].get(ph, 1.0) for ph in PHASES}).phase_s
    if residual and calib.get("unexplained_s"):
        phase["other"] = phase.get("other", 0.0) + calib["unexplained_s"]
    return phase


def _detail(sc: StepCost, inputs: StepInputs, spec: GpuSpec, fit: MemoryFit) -> dict[str, Any]:
    return {
        "device_s": sc.device_s, "host_s": sc.host_s, "bound": sc.bound, "launches": sc.launches,
        "by_class_s": sc.by_class, "policy": sc.policy.describe(), "notes": list(sc.notes), "data": sc.data,
        "peak_bytes": inputs.model.peak_bytes, "usable_bytes": usable_memory_bytes(spec),
        "headroom_frac": MEMORY_HEADROOM_FRAC, "autocast_dtype": half_dtype(spec),
        "comm_s": sc.comm_s, "comm_exposed_s": sc.comm_exposed_s,
        "memory_fit": fit.as_dict(),
    }


def eval_s_for(profile: Profile | StepInputs, spec: GpuSpec, policy: Policy | None = None,
               class_factors: dict[str, float] | None = None) -> float | None:
    """Seconds of one evaluation episode (``profile.eval``) on ``spec``: its counted forward ops
    costed as a step of their own (no backward, optimizer or data wait), scaled up by the share of
    its FLOPs the capped op rows miss. None without counted ops."""
    inputs = step_inputs(profile)
    episode = inputs.eval_step()
    if episode is None:
        return None
    sc = cost_step(episode, spec, policy, data=False, class_factors=class_factors)
    return sc.step_s / max(inputs.eval.ops_flops_frac, 0.05)


def pipelined_step(profile: Profile | StepInputs, spec: GpuSpec, policy: Policy, *, ops: Any = None,
                   extra_kernels: tuple = (), class_factors: dict[str, float] | None = None) -> PipelineStep:
    """A traced pipeline's step on ``spec`` under ``policy``: every rank's rows costed, then scheduled
    (:func:`ccprof.hardware.pipeline.pipeline_step`). ``ops`` (a what-if's edited rows) and
    ``extra_kernels`` (the kernels a tweak adds) are the profile's own rank's; the other ranks keep
    their rows, each costed with its own inputs (:meth:`StepInputs.for_rank`). The profile must have
    a pipeline (``StepInputs.pipeline``)."""
    inputs = step_inputs(profile)
    assert inputs.pipeline is not None
    own = inputs.pipeline_rank

    def cost(rank_ops: list, rank: int) -> StepCost:       # each rank with its own optimizers, host counts, fusion
        return step_cost_for(inputs.for_rank(rank), spec, policy, ops=rank_ops,
                             extra_kernels=extra_kernels if rank == own else (), class_factors=class_factors)
    return pipeline_step(inputs.pipeline, cost, own, list(inputs.ops if ops is None else ops))


def _pipelined(inputs: StepInputs, spec: GpuSpec, policy: Policy, class_factors: dict[str, float] | None,
               detail: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """A pipeline's phase seconds under ``policy`` and bf16 (:func:`pipelined_step`);
    ``detail["pipeline"]`` gets the bubble and each rank's work."""
    run = pipelined_step(inputs, spec, policy, class_factors=class_factors)
    run16 = pipelined_step(inputs, spec, replace(policy, autocast=half_dtype(spec)), class_factors=class_factors)
    detail["pipeline"] = run.detail
    detail["pipeline_bf16_bubble_s"] = run16.bubble_s
    return run.phase_s, run16.phase_s


def spanned_nodes(profile: Profile | StepInputs) -> int:
    """The most nodes one of the step's collectives spans (its op row's ``attrs["nodes"]``); 1 without any."""
    inputs = step_inputs(profile)
    ops = list(inputs.ops) + [o for r in (inputs.pipeline.ranks if inputs.pipeline else ()) for o in r.ops]
    return max((int((o.attrs or {}).get("nodes", 1) or 1) for o in ops), default=1)


def project(profile: Profile | StepInputs, catalog: dict[str, GpuSpec]) -> dict[str, GpuProjection]:
    """Project the profile's step time, bf16 step time, memory fit, MFU and HFU onto each GPU.

    Inputs: a Profile or its StepInputs (CPU or GPU; ``ops`` preferred, the FLOPs per step as a
    fallback) and a
    catalog from ``load_catalog``. Output: ``{gpu_id: GpuProjection}`` with ``phase_s`` (and
    ``phase_s_bf16``) summing to ``step_s``; ``method`` is ``"measured"`` for the GPU the
    profile ran on, ``"calibrated"`` for the others when that GPU is in the catalog, else
    ``"cost_model"`` (``"flops_only"`` without op records); a GPU whose catalog entry has no network
    figure is left out when the step's collectives span several nodes. ``detail`` carries the device and
    host seconds by phase, which side bounds each phase, launches, device time by kernel class,
    the policy, notes, the data-wait reasoning and the memory fit figures.

    Example: ``project(Profile.from_json("profile.json"), load_catalog())["h100-sxm"].step_s``.
    """
    inputs = step_inputs(profile)
    mf = inputs.model
    peak_bytes = mf.peak_bytes
    method_base = "cost_model" if inputs.ops else "flops_only"
    src = source_gpu(inputs, catalog)
    measured = _measured_step_s(inputs) if src else None
    if src is not None and measured is None:
        src = None
    calib: dict[str, Any] | None = None
    raw_src: StepCost | None = None
    if src is not None:
        raw_src = step_cost_for(inputs, catalog[src])
        calib = _calibration(inputs, raw_src, catalog[src])
    model_flops = mf.model_flops_per_step or mf.flops_per_step or sum(o.flops for o in inputs.ops)
    exec_flops = mf.flops_per_step or sum(o.flops for o in inputs.ops)
    pipe = inputs.pipeline
    if pipe is not None:        # MFU per GPU: the pipeline ranks' mean work (ccprof.hardware.pipeline)
        n = len(pipe.ranks)
        model_flops = sum(r.model_flops_per_step or r.flops_per_step for r in pipe.ranks) / n
        exec_flops = sum(r.flops_per_step for r in pipe.ranks) / n
    out: dict[str, GpuProjection] = {}
    nodes = spanned_nodes(inputs)
    for gid, spec in catalog.items():
        if nodes > 1 and not spec.network_bytes_per_s_per_gpu:
            continue        # its collectives across nodes cannot be costed (ccprof.hardware.comm.NoNetworkError)
        policy = policy_for(inputs, spec)
        cf = calib.get("class_factors") if calib else None
        sc = step_cost_for(inputs, spec, policy, class_factors=cf)
        sc16 = step_cost_for(inputs, spec, replace(policy, autocast=half_dtype(spec)), class_factors=cf)
        fit = memory_fit_for(inputs, spec)
        detail = _detail(sc, inputs, spec, fit)
        if peak_bytes <= 0:
            detail["note"] = "peak memory unknown: fit assumed"
        if not inputs.ops:
            detail["ops_note"] = ("no per-op records: step time from the FLOPs at the datasheet peak; "
                                  "a lower bound")
        measured_here = None
        method = method_base
        phase_s, phase16 = dict(sc.phase_s), dict(sc16.phase_s)
        if src is not None and gid == src:
            measured_here, method = measured, "measured"
            detail["model_step_s"] = raw_src.step_s
            detail["model_error_frac"] = (raw_src.step_s - measured) / measured
            detail["calibration"] = {"source_gpu": src, **calib} if calib else {}
            phase_s = {ph: float(inputs.measured.phase_s.get(ph, 0.0) or 0.0) for ph in PHASES}
            if sum(phase_s.values()) <= 0:        # no phase means recorded: split as the model does
                phase_s = dict(sc.phase_s)
            total = sum(phase_s.values())
            if total > 0:                         # the phase means may miss a little glue: scale to the median
                phase_s = {ph: v * measured / total for ph, v in phase_s.items()}
            phase16 = _apply(sc16, calib) if calib else phase16
        elif src is not None and calib is not None:
            method = "calibrated"
            detail["calibration"] = {"source_gpu": src, **calib}
            phase_s, phase16 = _apply(sc, calib), _apply(sc16, calib)
        if pipe is not None and measured_here is None:
            phase_s, phase16 = _pipelined(inputs, spec, policy, cf, detail)
        step_s = sum(phase_s.values()) or None
        step16 = sum(phase16.values()) or None
        peak, key = compute_peak(inputs, spec, policy)
        peak16, key16 = compute_peak(inputs, spec, replace(policy, autocast=half_dtype(spec)))
        detail["compute_key"], detail["compute_key_bf16"] = key, key16
        detail["mfu_bf16"] = mfu(model_flops, step16, peak16)
        ev_s = eval_s_for(inputs, spec, policy, cf)
        if measured_here is not None and inputs.eval is not None and not inputs.eval.seconds_counted:
            ev_s = inputs.eval.seconds             # timed on this very GPU
        band = (step_s + sc.step_s_lo - sc.step_s, step_s + sc.step_s_hi - sc.step_s) if step_s else (None, None)
        out[gid] = GpuProjection(
            step_s=step_s, step_s_bf16=step16, fits=fit.fits,
            mfu=mfu(model_flops, step_s, peak), measured_step_s=measured_here, method=method, detail=detail,
            phase_s=phase_s, phase_s_bf16=phase16, hfu=mfu(exec_flops, step_s, peak), eval_s=ev_s,
            step_s_lo=band[0], step_s_hi=band[1])
    return out
