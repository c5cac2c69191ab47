"""Achieved device seconds of one GPU kernel: the measured-and-fitted core of the cost model.

Two kinds of kernel, each with parameters fitted on measured kernels (``kernel_params.json``,
refit by ``bench/fit_cost_model.py``; what each was fitted on is written next to it there):

* **GEMM-like** (``mm``, ``addmm``, ``bmm``, convolutions as implicit GEMMs, attention as its
  matmuls): a tile-and-wave model in the manner of NeuSight (Lee et al., ASPLOS 2025). The
  output is cut into tiles; ``ceil(tiles / (SMs x CTAs per SM))`` waves each run one tile's
  ``2·tm·tn·(K + k0)`` FLOPs at a fitted share of one SM's peak; cuBLAS's choice of tile and
  split-K is taken as the fastest of a few candidates. The time is the larger of that and the
  operands' bytes over achieved bandwidth, plus a per-kernel floor. Three math units have their
  own fitted tiles: ``simt`` (fp32 on CUDA cores; NeuSight's fp32 kernels on five GPUs; cuDNN's
  fp32 convolutions have their own, ``conv_simt``),
  ``tensor16`` (bf16/fp16 tensor cores) and ``tf32`` (XLA's measured H100 matmul table).
  fp32 on CUDA cores is further capped by the board's power: a GPU whose TDP cannot feed its
  peak at the fitted energy per FLOP of its process node cannot hold its boost clock (T4, P4).
* **Memory-bound** (everything else): ``floor + bytes / (share x bandwidth)``, with the share
  fitted per class (elementwise, softmax, norm) on NeuSight's kernels.

Everything here is a pure function of shapes, dtype and a :class:`~ccprof.hardware.catalog.GpuSpec`.
``predict_op_s("aten.mm", [(4096, 4096), (4096, 4096)], "bfloat16", "h100-sxm")`` is the
public per-op entry point.

This module classifies an op and dispatches it to its formula; the parts live beside it and
are re-exported here: the aten names of each class (``_kernel_ops.py``), the GEMMs an op runs
and their tile-and-wave time (``_kernel_gemm.py``), the fitted parameters (``_kernel_params.py``).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from ccprof.artefacts.vocab import MATMUL_CLASSES, STREAM_CLASSES, dtype_name

# the parts, re-exported here: kernels.py is the one module the cost model and the fit import
from ccprof.hardware._kernel_gemm import (  # noqa: F401  (re-exported)
    Gemm,
    _is_winograd,
    _mm_gemm,
    _prod,
    attention_gemms,
    conv_gemms,
    gemm_core,
    rnn_gemms,
)
from ccprof.hardware._kernel_ops import (  # noqa: F401  (re-exported: the op tables are the classes' members)
    _ATTN_BWD,
    _ATTN_FWD,
    _CONV,
    _CONV_BW,
    _GEMM,
    _HOST,
    _NORM,
    _REDUCE,
    _RNN,
    _RNN_BW,
    _SOFTMAX,
    _VIEW,
    op_base,
)
from ccprof.hardware._kernel_params import (  # noqa: F401  (re-exported)
    PARAMS_PATH,
    GemmParams,
    KernelParams,
    load_params,
    params_from_dict,
)
from ccprof.hardware.catalog import GpuSpec, load_catalog, resolve_gpu
from ccprof.hardware.comm import collective_kind, collective_s

__all__ = [
    "PARAMS_PATH", "GemmParams", "KernelParams", "Gemm", "load_params", "op_base", "op_class",
    "math_unit", "peak_for", "simt_sustain", "gemm_core", "gemm_s", "params_from_dict", "gemms_of", "conv_gemms", "attention_gemms",
    "stream_s", "kernel_s", "predict_op_s", "elem_bytes", "STREAM_CLASSES",
]


# --- op classes --------------------------------------------------------------------------
def op_class(op: str) -> str:
    """The kernel class of an aten op: ``gemm``, ``conv``, ``conv_backward``, ``attention``,
    ``attention_backward``, ``softmax``, ``norm``, ``reduce``, ``elementwise``, ``foreach``,
    ``fused_optimizer``, ``host`` (a device sync or host-only work) or ``view`` (no kernel).

    A collective (``c10d.*``, ``_c10d_functional.*``) is ``collective``, costed over the links
    (``ccprof.hardware.comm``); a wait on one is ``view``. Anything unknown is ``elementwise``:
    costed as its bytes over achieved bandwidth.
    """
    if op.startswith(("c10d.", "_c10d_functional.")):
        return "collective" if collective_kind(op) else "view"
    b = op_base(op)
    if b in _VIEW:
        return "view"
    if b in _GEMM:
        return "gemm"
    if b in _CONV:
        return "conv"
    if b in _CONV_BW:
        return "conv_backward"
    if b in _ATTN_FWD:
        return "attention"
    if b in _RNN:
        return "rnn"
    if b in _RNN_BW:
        return "rnn_backward"
    if b in _ATTN_BWD:
        return "attention_backward"
    if b in _NORM:              # before the ``_fused_`` prefix: CUDA's ``_fused_rms_norm`` is a norm kernel
        return "norm"
    if b.startswith("_fused_"):
        return "fused_optimizer" if any(k in b for k in ("adam", "sgd", "adagrad")) else "elementwise"
    if b.startswith("_foreach_"):
        return "foreach"
    if b in _HOST:
        return "host"
    core = b.rstrip("_") if not b.startswith("_") else b
    if b in _SOFTMAX or core in _SOFTMAX:
        return "softmax"
    if b in _NORM or core in _NORM:
        return "norm"
    if b in _REDUCE or core in _REDUCE:
        return "reduce"
    return "elementwise"


# --- device figures ----------------------------------------------------------------------
_LOW = {"bfloat16": "bf16", "float16": "fp16"}


def math_unit(dtype: str, spec: GpuSpec, *, tf32: bool = False) -> str:
    """Which units a GEMM of ``dtype`` runs on: ``tensor16``, ``tf32`` or ``simt`` (CUDA cores).

    ``"tfloat32"`` (or ``tf32=True`` with float32) is fp32 on TF32 tensor cores where the GPU
    has them; 16-bit dtypes fall back to ``simt`` on GPUs without units for them.
    """
    d = dtype_name(dtype)
    if d in _LOW:
        key = _LOW[d]
        if key in spec.peak_flops or ("fp16" in spec.peak_flops and key == "bf16"):
            return "tensor16"
        return "simt"
    if (d == "tfloat32" or tf32) and "tf32" in spec.peak_flops:
        return "tf32"
    return "simt"


def peak_for(unit: str, dtype: str, spec: GpuSpec) -> float:
    """Dense peak FLOP/s of ``spec`` for a math unit (bf16 on a GPU with only fp16 units uses fp16's)."""
    pk = spec.peak_flops
    if unit == "tensor16":
        key = _LOW.get(dtype_name(dtype), "bf16")
        return pk.get(key) or pk.get("fp16") or pk.get("bf16") or pk["fp32"]
    if unit == "tf32":
        return pk.get("tf32") or pk["fp32"]
    if "fp32" not in pk:
        raise ValueError(f"catalog entry {spec.id!r} has no fp32 peak; add tflops.fp32 to it")
    return pk["fp32"]


def simt_sustain(spec: GpuSpec, params: KernelParams) -> float:
    """Share of the fp32 CUDA-core peak the board's power lets it hold (1 when unknown).

    ``min(1, TDP / (peak FLOP/s x energy per FLOP))`` with the energy per fp32 FLOP taken as
    proportional to the process node (``simt_pj_per_flop_12nm`` x nm / 12): a stated scaling,
    with its one constant fitted on the T4 and P4 (70-75 W boards that cannot hold boost clocks).
    """
    tdp = getattr(spec, "tdp_w", None)
    node = getattr(spec, "process_nm", None)
    fp32 = spec.peak_flops.get("fp32")
    if not tdp or not node or not fp32 or params.simt_pj_per_flop_12nm <= 0:
        return 1.0
    return min(1.0, tdp / (fp32 * params.simt_pj_per_flop_12nm * 1e-12 * node / 12.0))


def elem_bytes(dtype: str) -> int:
    d = dtype_name(dtype)
    return 2 if d in _LOW else 8 if d in ("float64", "int64", "complex64") else 1 if d in ("int8", "uint8", "bool") else 4


# --- GEMM --------------------------------------------------------------------------------
def gemm_s(g: Gemm, unit: str, spec: GpuSpec, params: KernelParams, *, dtype: str = "float32",
           floor: bool = True, operand_bound: bool = True, tiles: str | None = None) -> float:
    """Seconds of one GEMM on ``spec`` by the tile-and-wave model (:func:`gemm_core`); ``tiles``
    picks another fitted tile set for the same units (``conv_simt``: cuDNN's fp32 kernels)."""
    p = params.gemm[tiles or unit]
    peak = peak_for(unit, dtype, spec) * (simt_sustain(spec, params) if unit == "simt" else 1.0)
    # Without an SM count there is no wave quantization: 1,000 "SMs" make waves continuous.
    sms = getattr(spec, "sm_count", None) or 1000
    t = gemm_core(max(g.b, 1), max(g.m, 1), max(g.n, 1), max(g.k, 1), peak=peak, sms=sms,
                  bw=spec.bandwidth_bytes_per_s, ebytes=elem_bytes(dtype), p=p, operand_bound=operand_bound)
    return (params.gemm_floor_s if floor else 0.0) + float(t)


def gemms_of(op: str, shapes: Sequence[Sequence[int]], out_shapes: Sequence[Sequence[int]] = (),
             attrs: dict[str, Any] | None = None) -> list[Gemm]:
    """The GEMMs one call of a GEMM-like op runs ([] for other classes)."""
    cls = op_class(op)
    base = op_base(op)
    if cls == "gemm":
        return _mm_gemm(base, shapes, out_shapes)
    if cls in ("conv", "conv_backward"):
        return conv_gemms(base, shapes, out_shapes, attrs)
    if cls in ("attention", "attention_backward"):
        return attention_gemms(base, shapes, attrs)
    if cls in ("rnn", "rnn_backward"):
        return rnn_gemms(shapes, backward=cls == "rnn_backward")
    return []


# --- memory-bound ------------------------------------------------------------------------
def stream_s(nbytes: float, cls: str, spec: GpuSpec, params: KernelParams, *, floor: bool = True) -> float:
    """Seconds of a memory-bound kernel moving ``nbytes``: floor + bytes / (class share x bandwidth)."""
    eff = params.stream_eff.get(cls, params.stream_eff["elementwise"])
    return (params.stream_floor_s if floor else 0.0) + max(nbytes, 0.0) / (eff * spec.bandwidth_bytes_per_s)


# --- one kernel ----------------------------------------------------------------------------
def kernel_s(op: str, shapes: Sequence[Sequence[int]], dtype: str, spec: GpuSpec, params: KernelParams, *,
             out_shapes: Sequence[Sequence[int]] = (), attrs: dict[str, Any] | None = None,
             nbytes: float | None = None, tf32: bool = False, causal_skip: bool = True,
             flops: float | None = None) -> float:
    """Device seconds of one call of ``op`` (GEMM-like by its GEMMs, others by ``nbytes``).

    ``nbytes`` is what the kernel reads and writes (default: inputs and outputs at ``dtype``'s
    element size); ``tf32`` runs fp32 GEMMs on TF32 units; ``causal_skip`` halves causal
    attention's work (flash kernels skip the masked half). A GEMM-like op recorded without
    shapes (profiles from before shapes were recorded) is costed as ``flops`` at the unit's
    datasheet peak: a lower bound.
    """
    cls = op_class(op)
    base = op_base(op)
    if cls in ("view", "host"):
        return 0.0
    if cls == "collective":
        a = attrs or {}
        size = a.get("bytes", nbytes if nbytes is not None else 0)
        return collective_s(collective_kind(op) or "all_reduce", float(size), int(a.get("group", 1)), spec,
                            nodes=int(a.get("nodes", 1)))
    if nbytes is None:
        nbytes = elem_bytes(dtype) * sum(_prod(s) for s in (*shapes, *out_shapes))
    gemms = gemms_of(op, shapes, out_shapes, attrs)
    if not gemms and flops and cls in MATMUL_CLASSES:
        unit = math_unit(dtype, spec, tf32=tf32)
        return flops / peak_for(unit, dtype, spec)      # no shapes: the datasheet bound
    if not gemms or cls in STREAM_CLASSES or cls in ("elementwise", "foreach", "fused_optimizer"):
        scls = cls if cls in STREAM_CLASSES else "elementwise"
        return stream_s(nbytes, scls, spec, params)
    unit = math_unit(dtype, spec, tf32=tf32)
    fused_attention = cls in ("attention", "attention_backward")     # its "K" is a loop, not a matrix
    conv = cls in ("conv", "conv_backward")
    tiles = "conv_simt" if conv and unit == "simt" and "conv_simt" in params.gemm else unit
    t = sum(gemm_s(g, unit, spec, params, dtype=dtype, floor=False, operand_bound=not fused_attention,
                   tiles=tiles) for g in gemms)
    if conv:
        if tiles != "conv_simt":
            t /= params.conv_eff             # cuDNN's tensor-core kernels: the GEMM tiles, scaled
        if unit == "simt" and _is_winograd(shapes, out_shapes, base):
            t = min(t, t / params.winograd_speedup)
    elif cls in ("attention", "attention_backward"):
        t /= params.attention_eff
        if causal_skip and (attrs or {}).get("causal"):
            t *= 0.5
    # one launch per GEMM where they are separate kernels (conv backward's dgrad + wgrad; an
    # RNN's time steps, each waiting for the last)
    floors = params.gemm_floor_s * (len(gemms) if cls in ("conv_backward", "rnn", "rnn_backward") else 1)
    return floors + max(t, nbytes / (params.gemm[unit].operand_bw_eff * spec.bandwidth_bytes_per_s))


def _shape_list(shapes: Iterable[Any]) -> list[list[int]]:
    out = []
    for s in shapes:
        out.append([] if s is None else [int(x) for x in (s if isinstance(s, (list, tuple)) else [s])])
    return out


def _infer_out(op: str, shapes: list[list[int]], stride: int, padding: int | None) -> list[list[int]]:
    """Output shape for predict_op_s when none is given."""
    cls, base = op_class(op), op_base(op)
    if cls == "gemm":
        gs = _mm_gemm(base, shapes, [])
        return [[gs[0].b, gs[0].m, gs[0].n]] if gs and gs[0].b > 1 else ([[gs[0].m, gs[0].n]] if gs else [])
    if cls == "conv" and len(shapes) >= 2 and len(shapes[0]) == 4 and len(shapes[1]) == 4:
        x, w = shapes[0], shapes[1]
        k = w[2]
        pad = (k // 2) if padding is None else padding
        ho = (x[2] + 2 * pad - k) // stride + 1
        wo = (x[3] + 2 * pad - w[3]) // stride + 1
        return [[x[0], w[0], ho, wo]]
    if cls in ("attention",) and shapes:
        return [list(shapes[0])]
    # elementwise and reductions over the last dim: the broadcast of the inputs
    dims = max((len(s) for s in shapes), default=0)
    out = [1] * dims
    for s in shapes:
        for i, d in enumerate(s[::-1]):
            out[dims - 1 - i] = max(out[dims - 1 - i], d)
    return [out]


def predict_op_s(op: str, shapes: Sequence[Any], dtype: str, gpu: str | GpuSpec, *,
                 catalog: dict[str, GpuSpec] | None = None, out_shape: Sequence[int] | None = None,
                 stride: int = 1, padding: int | None = None, params: KernelParams | None = None) -> float:
    """Device seconds of one forward kernel of ``op`` on ``gpu`` (the public per-op cost model).

    Inputs: ``op`` the aten name as the profile records it (``"aten.bmm"``, ``"aten.addmm"``,
    ``"aten.convolution"``, ``"aten.add.Tensor"``, ``"aten.gelu"``, ``"aten._softmax"``,
    ``"aten.native_layer_norm"``, ...); ``shapes`` the input tensor shapes in order (``()`` for a
    0-dim tensor); ``dtype`` one of ``"float32"``, ``"tfloat32"`` (fp32 on TF32 tensor cores),
    ``"bfloat16"``, ``"float16"``; ``gpu`` a catalog id or a GpuSpec. A convolution's output
    is taken from ``out_shape``, else from ``stride``/``padding`` (default: "same" padding).
    Unknown ops never raise: they are costed as their input and output bytes over the GPU's
    achieved elementwise bandwidth, plus the kernel floor.

    Output: seconds on the device, without host dispatch or launch overhead.

    Example: ``predict_op_s("aten.mm", [(4096, 4096), (4096, 4096)], "bfloat16", "h100-sxm")`` is
    about 1.75e-4 s (XLA measured 1.755e-4 s on an H100: 783 TFLOP/s).
    """
    if isinstance(gpu, GpuSpec):
        spec = gpu
    else:
        cat = catalog if catalog is not None else load_catalog(user=False)
        spec = cat[resolve_gpu(gpu, cat)]
    p = params or load_params()
    ins = _shape_list(shapes)
    outs = [list(out_shape)] if out_shape is not None else _infer_out(op, ins, stride, padding)
    d = "float32" if dtype == "tfloat32" else dtype
    nbytes = None
    if op_class(op) not in ("gemm", "conv", "attention"):
        scalar_free = [s for s in ins if s]
        nbytes = elem_bytes(d) * (sum(_prod(s) for s in scalar_free) + sum(_prod(s) for s in outs))
    return kernel_s(op, ins, d, spec, p, out_shapes=outs, nbytes=nbytes, tf32=dtype == "tfloat32")
