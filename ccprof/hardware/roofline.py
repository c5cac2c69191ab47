"""Step-time projection onto catalog GPUs: a per-operator roofline, calibrated by measurement.

For each aten op the profiler recorded over one step (``Profile.ops``)::

    t_op = max(flops / peak[dtype], (bytes_read + bytes_written) / bandwidth) + count * launch_s

and the projected step time is the sum over ops. Matmul, convolution and attention ops
run on tensor cores at the dtype's dense peak (fp32 uses the TF32 peak only when the
script enabled TF32); every other op is costed at the fp32 (vector) peak, which in
practice makes it bandwidth-bound.

The bf16 projection (``step_s_bf16``) re-costs the fp32 matmul/conv/attention ops as bf16
(fp16 on GPUs without bf16 units: T4, V100) with their bytes halved, as autocast would.

When the profile was taken on a catalog GPU, the measured step time is the truth for that
GPU, and every other GPU is projected from it the Habitat way (Yu et al., USENIX ATC 2021;
FACTS.md): the measured time is split over ops in proportion to their roofline time on
the source GPU, and each op's share is scaled by
``(BW_src/BW_dst)^g * (C_src/C_dst)^(1-g)`` with ``g = 1 - 0.5*I/R`` for arithmetic
intensity ``I <= R = peak/bandwidth``, else ``0.5*R/I``. Data-loading wait stays as
measured (host-bound, it does not change with the GPU).
"""
from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any, Iterable

from ccprof.hardware.catalog import GpuSpec, match_device
from ccprof.profiler.profile import GpuProjection, OpCost, Profile

__all__ = [
    "LAUNCH_S_PER_KERNEL", "MEMORY_HEADROOM_FRAC", "op_base", "is_tensor_op", "is_view_op",
    "peak_key", "peak_flops_per_s", "op_time_s", "roofline_step_s", "half_dtype", "as_bf16",
    "habitat_gamma", "habitat_scale_s", "usable_memory_bytes", "fits_memory",
    "source_gpu", "compute_dtype", "mfu", "project",
]

# Per-kernel launch cost added to every op call. A CUDA launch costs ~3-5 us of driver and
# queue time when launches are pipelined (NVIDIA, "Getting Started with CUDA Graphs",
# 2019) and ~20 us for an eager PyTorch element-wise op measured end to end on a V100
# (NVIDIA Nsight Systems guide, via groundy.com). 5 us is a floor for eager PyTorch, not
# a measurement of the user's host; the measured-GPU path replaces it with the truth.
LAUNCH_S_PER_KERNEL = 5e-6

# Memory must leave this fraction of the device free to "fit": the CUDA context
# (~0.3-0.5 GB), cuBLAS/cuDNN workspaces and caching-allocator fragmentation live there.
# 10% is the PyTorch TensorBoard plugin's threshold (peak memory > 90% -> act; FACTS.md).
MEMORY_HEADROOM_FRAC = 0.10

# aten ops that FlopCounterMode counts and that run on tensor/matrix cores.
_TENSOR_OPS = frozenset({
    "mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_scaled_mm", "addbmm", "einsum",
    "convolution", "_convolution", "convolution_backward", "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "cudnn_convolution",
    "cudnn_convolution_transpose", "mkldnn_convolution", "_convolution_mode",
    "scaled_dot_product_attention",
})
_TENSOR_PREFIXES = ("_scaled_dot_product_", "_flash_attention", "_efficient_attention",
                    "cudnn_convolution", "_cudnn_attention")
_CONV_PREFIXES = ("conv", "_conv", "cudnn_conv", "mkldnn_conv")

# Ops that only change tensor metadata: no kernel, no bytes moved.
_VIEW_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "expand_as",
    "as_strided", "unsqueeze", "squeeze", "select", "slice", "split", "split_with_sizes",
    "chunk", "unbind", "detach", "alias", "lift_fresh", "view_as", "narrow", "unflatten",
    "flatten", "_reshape_alias", "numpy_T", "diagonal", "empty", "empty_like",
    "empty_strided", "_to_copy_view", "sym_size", "sym_stride", "is_same_size",
})

_DTYPE_KEY = {
    "float32": "fp32", "float": "fp32", "torch.float32": "fp32",
    "bfloat16": "bf16", "torch.bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "torch.float16": "fp16",
}


def op_base(op: str) -> str:
    """``"aten.mm.default"`` / ``"aten::mm"`` / ``"mm"`` -> ``"mm"``."""
    name = op.strip()
    for prefix in ("aten::", "aten.", "torch.ops.aten."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.split(".", 1)[0]


def is_tensor_op(op: str) -> bool:
    """True for matmul, convolution and attention ops (tensor-core work)."""
    base = op_base(op).rstrip("_")
    return base in _TENSOR_OPS or base.startswith(_TENSOR_PREFIXES)


def _is_conv(op: str) -> bool:
    return op_base(op).startswith(_CONV_PREFIXES)


def is_view_op(op: str) -> bool:
    """True for metadata-only ops that launch no kernel."""
    return op_base(op) in _VIEW_OPS


def peak_key(dtype: str, *, tensor_op: bool, tf32: bool = False) -> str:
    """Which peak an op runs at: ``fp32``, ``tf32``, ``bf16``, ``fp16`` or ``fp8``.

    Non-tensor ops run on the vector units: ``fp32`` whatever their dtype. Integer and
    fp64 ops also map to ``fp32`` (fp64 is not in the catalog; it is rare in training).
    """
    if not tensor_op:
        return "fp32"
    d = dtype.lower()
    if "float8" in d or d.startswith("fp8"):
        return "fp8"
    key = _DTYPE_KEY.get(d, "fp32")
    if key == "fp32" and tf32:
        return "tf32"
    return key


_FALLBACK = {"fp8": ("fp8", "bf16", "fp16", "fp32"), "bf16": ("bf16", "fp32"),
             "fp16": ("fp16", "fp32"), "tf32": ("tf32", "fp32"), "fp32": ("fp32",)}


def peak_flops_per_s(spec: GpuSpec, key: str) -> float:
    """Dense peak FLOP/s of ``spec`` for ``key``, falling back to the units it does have.

    bf16 on a GPU without bf16 units (T4, V100) falls back to fp32: those GPUs cannot run
    bf16 on tensor cores. Raises ValueError when the entry has no fp32 peak at all.
    """
    for k in _FALLBACK.get(key, ("fp32",)):
        if k in spec.peak_flops:
            return spec.peak_flops[k]
    raise ValueError(f"catalog entry {spec.id!r} has no fp32 peak; add tflops.fp32 to it")


def _op_tf32(op: OpCost, tf32_matmul: bool, tf32_cudnn: bool) -> bool:
    return tf32_cudnn if _is_conv(op.op) else tf32_matmul


def op_time_s(op: OpCost, spec: GpuSpec, *, tf32_matmul: bool = False, tf32_cudnn: bool = False,
              launch_s: float = LAUNCH_S_PER_KERNEL) -> float:
    """Roofline seconds of one op record (all its calls in a step) on ``spec``.

    ``max(flops / peak, bytes / bandwidth) + count * launch_s``; 0 for view ops.

    >>> from ccprof.profiler.profile import OpCost
    >>> from ccprof.hardware.catalog import GpuSpec
    >>> g = GpuSpec("g", "g", 1, 1e12, {"fp32": 1e13})
    >>> op_time_s(OpCost("aten.mm", "float32", 1, 10**13, 0, 0), g, launch_s=0.0)
    1.0
    """
    if is_view_op(op.op):
        return 0.0
    tensor = is_tensor_op(op.op)
    key = peak_key(op.dtype, tensor_op=tensor, tf32=_op_tf32(op, tf32_matmul, tf32_cudnn))
    compute_s = op.flops / peak_flops_per_s(spec, key) if op.flops else 0.0
    memory_s = (op.bytes_read + op.bytes_written) / spec.bandwidth_bytes_per_s
    return max(compute_s, memory_s) + max(op.count, 0) * launch_s


def half_dtype(spec: GpuSpec) -> str:
    """The 16-bit autocast dtype for ``spec``: bfloat16, or float16 where it has no bf16 units."""
    return "float16" if "bf16" not in spec.peak_flops and "fp16" in spec.peak_flops else "bfloat16"


def as_bf16(op: OpCost, spec: GpuSpec | None = None) -> OpCost:
    """The op as bf16 autocast would run it: fp32 tensor ops become bf16, bytes halved.

    On a GPU without bf16 units (``spec`` given and lacking ``bf16``) the op becomes fp16,
    which is what a user of that GPU would autocast to. Other ops are unchanged.
    """
    if not is_tensor_op(op.op) or _DTYPE_KEY.get(op.dtype.lower()) != "fp32":
        return op
    half = "bfloat16" if spec is None else half_dtype(spec)
    return replace(op, dtype=half, bytes_read=op.bytes_read // 2, bytes_written=op.bytes_written // 2)


def roofline_step_s(ops: Iterable[OpCost], spec: GpuSpec, *, tf32_matmul: bool = False,
                    tf32_cudnn: bool = False, bf16: bool = False,
                    launch_s: float = LAUNCH_S_PER_KERNEL) -> float:
    """Sum of :func:`op_time_s` over ``ops``; with ``bf16=True`` after :func:`as_bf16`."""
    total = 0.0
    for op in ops:
        if bf16:
            op = as_bf16(op, spec)
        total += op_time_s(op, spec, tf32_matmul=tf32_matmul, tf32_cudnn=tf32_cudnn, launch_s=launch_s)
    return total


def habitat_gamma(intensity_flops_per_byte: float, ridge_flops_per_byte: float) -> float:
    """Habitat's wave-scaling exponent: 1 for pure memory-bound, towards 0 for compute-bound."""
    i, r = intensity_flops_per_byte, ridge_flops_per_byte
    if r <= 0:
        return 1.0
    return 1.0 - 0.5 * i / r if i <= r else 0.5 * r / i


def habitat_scale_s(t_src_s: float, *, flops: float, bytes_: float, src_peak: float,
                    src_bw: float, dst_peak: float, dst_bw: float) -> float:
    """Scale one op's measured seconds from a source GPU to a destination GPU (Habitat).

    ``T_dst = T_src * (BW_src/BW_dst)^g * (C_src/C_dst)^(1-g)`` with ``g`` from
    :func:`habitat_gamma` at the op's intensity ``flops/bytes`` and the source ridge point.
    """
    if t_src_s <= 0:
        return 0.0
    intensity = flops / bytes_ if bytes_ > 0 else (float("inf") if flops > 0 else 0.0)
    if intensity == float("inf"):
        g = 0.0
    else:
        g = habitat_gamma(intensity, src_peak / src_bw)
    return t_src_s * (src_bw / dst_bw) ** g * (src_peak / dst_peak) ** (1.0 - g)


def usable_memory_bytes(spec: GpuSpec, headroom_frac: float = MEMORY_HEADROOM_FRAC) -> int:
    """Device memory a job may fill: ``memory_bytes * (1 - headroom_frac)``."""
    return int(spec.memory_bytes * (1.0 - headroom_frac))


def fits_memory(peak_bytes: int, spec: GpuSpec, headroom_frac: float = MEMORY_HEADROOM_FRAC) -> bool:
    """True when ``peak_bytes`` is within :func:`usable_memory_bytes` (unknown peak, 0, fits)."""
    return peak_bytes <= usable_memory_bytes(spec, headroom_frac)


def source_gpu(profile: Profile, catalog: dict[str, GpuSpec]) -> str | None:
    """Catalog id of the GPU the profile was measured on, or None (CPU, or not in the catalog)."""
    if profile.device.type != "cuda":
        return None
    if profile.device.catalog_id and profile.device.catalog_id in catalog:
        return profile.device.catalog_id
    return match_device(profile.device.name, catalog)


def compute_dtype(profile: Profile) -> str:
    """The dtype the step's matmuls ran in: the autocast dtype, else the parameters' dtype."""
    p = profile.precision
    if p.autocast:
        if p.autocast_dtype:
            return p.autocast_dtype
        # torch.autocast("cuda") defaults to float16, torch.autocast("cpu") to bfloat16
        return "float16" if profile.device.type == "cuda" else "bfloat16"
    return p.param_dtype or "float32"


def _tf32_flags(profile: Profile) -> tuple[bool, bool]:
    p = profile.precision
    matmul = p.tf32_matmul or p.float32_matmul_precision in ("high", "medium")
    return matmul, p.tf32_cudnn


def _flops_per_step(profile: Profile) -> int:
    return profile.flops.per_step or sum(op.flops for op in profile.ops)


def mfu(flops_per_step: float, step_s: float | None, peak_flops: float) -> float | None:
    """Model FLOPs utilization: ``flops_per_step / step_s / peak`` (PaLM's definition)."""
    if not step_s or step_s <= 0 or peak_flops <= 0 or flops_per_step <= 0:
        return None
    return flops_per_step / step_s / peak_flops


def _measured_step_s(profile: Profile) -> float | None:
    times = [t for t in profile.steps.step_s if t and t > 0]
    return statistics.median(times) if times else None


def _peak_bytes(profile: Profile) -> int:
    m = profile.memory
    return max(m.peak_bytes or 0, m.cuda_max_allocated_bytes or 0)


# Without per-op records, kernels per step are estimated as 3 per leaf module: one in
# forward, two in backward (grad of input and grad of weight), the pattern of Linear and
# Conv layers. A stated assumption, not a measurement; it keeps tiny models from
# projecting to nanoseconds.
KERNELS_PER_LEAF_MODULE = 3


def _leaf_modules(profile: Profile) -> int:
    names = [m.name for m in profile.model.modules if m.name]
    return sum(1 for n in names if not any(o.startswith(n + ".") for o in names))


def _flops_only_ops(profile: Profile) -> list[OpCost]:
    """Without per-op records, one synthetic matmul op carrying the step's FLOPs and kernels."""
    flops = profile.flops.per_step
    if not flops:
        return []
    return [OpCost(op="aten.mm", dtype=profile.precision.param_dtype or "float32",
                   count=KERNELS_PER_LEAF_MODULE * _leaf_modules(profile), flops=flops)]


def _with_compute_dtype(ops: list[OpCost], profile: Profile) -> list[OpCost]:
    """Synthetic ops under autocast run in the autocast dtype."""
    if profile.ops or not profile.precision.autocast:
        return ops
    return [replace(op, dtype=compute_dtype(profile)) for op in ops]


def project(profile: Profile, catalog: dict[str, GpuSpec]) -> dict[str, GpuProjection]:
    """Project the profile's step time, bf16 step time, memory fit and MFU onto each GPU.

    Inputs: a Profile (CPU or GPU; ``ops`` preferred, ``flops.per_step`` as a fallback) and
    a catalog from :func:`load_catalog`. Output: ``{gpu_id: GpuProjection}``; ``method`` is
    ``"measured"`` for the GPU the profile ran on, ``"habitat"`` for the others when that
    GPU is in the catalog, else ``"roofline"`` (``"flops_only"`` without op records).
    ``detail`` carries ``roofline_step_s``, ``roofline_step_s_bf16``, ``peak_bytes``,
    ``usable_bytes``, ``headroom_frac``, ``mfu_bf16``, ``autocast_dtype`` and
    ``compute_key`` (the peak MFU is measured against).

    Example: ``project(Profile.from_json("profile.json"), load_catalog())["h100-sxm"].step_s``.
    """
    ops = list(profile.ops) or _with_compute_dtype(_flops_only_ops(profile), profile)
    method_base = "roofline" if profile.ops else "flops_only"
    tf32_matmul, tf32_cudnn = _tf32_flags(profile)
    flops_step = _flops_per_step(profile)
    peak_bytes = _peak_bytes(profile)
    dtype = compute_dtype(profile)
    compute_key = peak_key(dtype, tensor_op=True, tf32=tf32_matmul)

    src = source_gpu(profile, catalog)
    measured = _measured_step_s(profile) if src else None
    if src is not None and measured is None:
        src = None
    kw = dict(tf32_matmul=tf32_matmul, tf32_cudnn=tf32_cudnn)

    # Split the measured GPU time over ops by their roofline share on the source GPU.
    src_shares: list[tuple[OpCost, float]] = []
    data_s = 0.0
    if src is not None:
        data_s = min(max(profile.steps.phase_s.get("data", 0.0) or 0.0, 0.0), measured)
        gpu_s = measured - data_s
        t_src = [op_time_s(op, catalog[src], **kw) for op in ops]
        total = sum(t_src)
        if total > 0:
            src_shares = [(op, gpu_s * t / total) for op, t in zip(ops, t_src) if t > 0]

    out: dict[str, GpuProjection] = {}
    for gid, spec in catalog.items():
        roof = roofline_step_s(ops, spec, **kw)
        roof_bf16 = roofline_step_s(ops, spec, bf16=True, **kw)
        bf16_ratio = roof_bf16 / roof if roof > 0 else 1.0
        detail: dict[str, Any] = {
            "roofline_step_s": roof,
            "roofline_step_s_bf16": roof_bf16,
            "peak_bytes": peak_bytes,
            "usable_bytes": usable_memory_bytes(spec),
            "headroom_frac": MEMORY_HEADROOM_FRAC,
            "autocast_dtype": half_dtype(spec),
            "compute_key": compute_key,
            "launch_s_per_kernel": LAUNCH_S_PER_KERNEL,
        }
        if peak_bytes <= 0:
            detail["note"] = "peak memory unknown: fit assumed"
        if not profile.ops:
            detail["ops_note"] = ("no per-op records: step time from FLOPs at the compute peak plus "
                                  f"{KERNELS_PER_LEAF_MODULE} launches per leaf module; a lower bound")
        measured_here = None
        if src is None:
            step_s, method = (roof if roof > 0 else None), method_base
        elif gid == src:
            step_s, method, measured_here = measured, "measured", measured
            detail["roofline_error_frac"] = (roof - measured) / measured if roof > 0 else None
        else:
            s = catalog[src]
            scaled = 0.0
            for op, t in src_shares:
                tensor = is_tensor_op(op.op)
                key = peak_key(op.dtype, tensor_op=tensor, tf32=_op_tf32(op, tf32_matmul, tf32_cudnn))
                scaled += habitat_scale_s(
                    t, flops=op.flops, bytes_=op.bytes_read + op.bytes_written,
                    src_peak=peak_flops_per_s(s, key), src_bw=s.bandwidth_bytes_per_s,
                    dst_peak=peak_flops_per_s(spec, key), dst_bw=spec.bandwidth_bytes_per_s)
            step_s, method = data_s + scaled, "habitat"
            detail["source_gpu"] = src
        if step_s is not None and method in ("measured", "habitat"):
            gpu_part = step_s - data_s
            step_s_bf16 = data_s + gpu_part * bf16_ratio
        else:
            step_s_bf16 = roof_bf16 if roof_bf16 > 0 else None
        peak_c = peak_flops_per_s(spec, compute_key)
        peak_bf16 = peak_flops_per_s(spec, "bf16" if detail["autocast_dtype"] == "bfloat16" else "fp16")
        detail["mfu_bf16"] = mfu(flops_step, step_s_bf16, peak_bf16)
        out[gid] = GpuProjection(
            step_s=step_s,
            step_s_bf16=step_s_bf16,
            fits=fits_memory(peak_bytes, spec),
            mfu=mfu(flops_step, step_s, peak_c),
            measured_step_s=measured_here,
            method=method,
            detail=detail,
        )
    return out
