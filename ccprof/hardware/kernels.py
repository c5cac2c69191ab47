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
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from ccprof.artefacts.vocab import MATMUL_CLASSES, STREAM_CLASSES, dtype_name
from ccprof.hardware.catalog import GpuSpec, load_catalog, resolve_gpu

__all__ = [
    "PARAMS_PATH", "GemmParams", "KernelParams", "Gemm", "load_params", "op_base", "op_class",
    "math_unit", "peak_for", "simt_sustain", "gemm_core", "gemm_s", "params_from_dict", "gemms_of", "conv_gemms", "attention_gemms",
    "stream_s", "kernel_s", "predict_op_s", "elem_bytes", "STREAM_CLASSES",
]

PARAMS_PATH = Path(__file__).with_name("kernel_params.json")

# --- op classes --------------------------------------------------------------------------
_GEMM = frozenset({"mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "mv", "addmv",
                   "addr", "dot", "vdot", "_scaled_mm", "_addmm_activation"})
_CONV = frozenset({"convolution", "_convolution", "cudnn_convolution", "cudnn_convolution_transpose",
                   "mkldnn_convolution", "convolution_overrideable", "conv1d", "conv2d", "conv3d",
                   "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "_convolution_mode"})
_CONV_BW = frozenset({"convolution_backward", "cudnn_convolution_backward", "mkldnn_convolution_backward",
                      "convolution_backward_overrideable"})
_ATTN_FWD = frozenset({"_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
                       "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
                       "_flash_attention_forward", "_efficient_attention_forward",
                       "_scaled_dot_product_fused_attention_overrideable", "_flash_attention_forward_no_dropout_inplace"})
_ATTN_BWD = frozenset({n + "_backward" for n in ("_scaled_dot_product_flash_attention",
                                                  "_scaled_dot_product_flash_attention_for_cpu",
                                                  "_scaled_dot_product_efficient_attention",
                                                  "_scaled_dot_product_cudnn_attention",
                                                  "_scaled_dot_product_fused_attention_overrideable")}
                      | {"_flash_attention_backward", "_efficient_attention_backward"})
# fused recurrent layers (oneDNN / cuDNN): one op runs a layer over the whole sequence
_RNN = frozenset({"mkldnn_rnn_layer", "_cudnn_rnn", "miopen_rnn"})
_RNN_BW = frozenset({"mkldnn_rnn_layer_backward", "_cudnn_rnn_backward", "miopen_rnn_backward"})
_SOFTMAX = frozenset({"_softmax", "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data",
                      "_safe_softmax", "softmax", "log_softmax", "logsumexp"})
_NORM = frozenset({"native_layer_norm", "native_layer_norm_backward", "native_batch_norm",
                   "native_batch_norm_backward", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                   "_native_batch_norm_legit_functional", "cudnn_batch_norm", "cudnn_batch_norm_backward",
                   "native_group_norm", "native_group_norm_backward", "_fused_rms_norm", "_fused_rms_norm_backward",
                   "batch_norm_backward", "miopen_batch_norm", "miopen_batch_norm_backward"})
_REDUCE = frozenset({"sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "prod", "norm",
                     "linalg_vector_norm", "var", "std", "var_mean", "std_mean", "nll_loss_forward",
                     "nll_loss_backward", "nll_loss2d_forward", "nll_loss2d_backward", "cumsum", "cumprod",
                     "embedding_dense_backward", "index_add", "index_add_", "scatter_add", "scatter_add_",
                     "index_put", "index_put_", "_embedding_bag", "_embedding_bag_backward", "topk", "sort",
                     "max_pool2d_with_indices_backward", "avg_pool2d_backward", "_adaptive_avg_pool2d_backward",
                     "mse_loss", "mse_loss_backward", "binary_cross_entropy_with_logits", "multinomial",
                     "_unique2", "bincount", "histc"})
# Host work: the op makes the host wait for the device (a sync), or runs on the host only.
_HOST = frozenset({"_local_scalar_dense", "item", "nonzero", "_assert_async", "is_nonzero",
                   "equal", "allclose", "masked_select", "unique"})
# Metadata only: no kernel.
_VIEW = frozenset({"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "expand_as",
                   "as_strided", "unsqueeze", "squeeze", "select", "slice", "split", "split_with_sizes",
                   "chunk", "unbind", "detach", "alias", "lift_fresh", "view_as", "narrow", "unflatten",
                   "flatten", "_reshape_alias", "numpy_T", "diagonal", "empty", "empty_like",
                   "empty_strided", "sym_size", "sym_stride", "is_same_size", "set_", "resize_",
                   "_to_copy_view", "new_empty", "new_empty_strided", "_has_compatible_shallow_copy_type"})


def op_base(op: str) -> str:
    """``"aten.mm.default"`` / ``"aten::mm"`` / ``"mm"`` -> ``"mm"``."""
    name = op.strip()
    for prefix in ("torch.ops.aten.", "aten::", "aten."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.split(".", 1)[0]


def op_class(op: str) -> str:
    """The kernel class of an aten op: ``gemm``, ``conv``, ``conv_backward``, ``attention``,
    ``attention_backward``, ``softmax``, ``norm``, ``reduce``, ``elementwise``, ``foreach``,
    ``fused_optimizer``, ``host`` (a device sync or host-only work) or ``view`` (no kernel).

    Anything unknown is ``elementwise``: costed as its bytes over achieved bandwidth.
    """
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


# --- parameters --------------------------------------------------------------------------
@dataclass(frozen=True)
class GemmParams:
    """Fitted tile model of one math unit. ``tiles`` are (tm, tn, CTAs resident per SM) with
    ``tile_eff`` the share of an SM's peak one wave of that tile reaches; ``k_overhead`` is the
    fixed per-tile work (prologue, epilogue) in units of K; ``splitk_s`` the cost of a split-K
    reduction launch; ``operand_bw_eff`` the bandwidth share when the operands bound it;
    ``occupancy_gamma`` how much of an SM's rate a thinly occupied SM gives its tiles (0: a lone
    tile runs at 1/c of it, 1: at all of it); ``splitk_min_k`` the shortest K slice split-K makes."""
    tiles: tuple[tuple[int, int, int], ...]
    tile_eff: tuple[float, ...]
    k_overhead: float
    splitk_s: float
    operand_bw_eff: float
    occupancy_gamma: float = 0.0
    splitk_min_k: float = 128.0
    splits: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    fitted_on: str = ""


@dataclass(frozen=True)
class KernelParams:
    """All fitted and stated constants of the kernel model (``kernel_params.json``)."""
    gemm: dict[str, GemmParams]
    stream_eff: dict[str, float]            # share of bandwidth by STREAM_CLASSES
    gemm_floor_s: float                     # device floor of a GEMM kernel
    stream_floor_s: float                   # device floor of a memory-bound kernel
    conv_eff: float                         # implicit-GEMM convolution vs a plain GEMM
    winograd_speedup: float                 # fp32 3x3 stride-1 convolutions (cuDNN's Winograd)
    attention_eff: float                    # fused attention vs its matmuls as plain GEMMs
    simt_pj_per_flop_12nm: float            # energy of one fp32 FLOP at 12 nm (power cap)
    sources: dict[str, str] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)   # provenance and held-out errors
    harness: dict[str, Any] = field(default_factory=dict)  # the calibration harness's host terms


def _gemm_params(d: dict[str, Any]) -> GemmParams:
    return GemmParams(tiles=tuple(tuple(int(x) for x in t) for t in d["tiles"]),
                      tile_eff=tuple(float(x) for x in d["tile_eff"]), k_overhead=float(d["k_overhead"]),
                      splitk_s=float(d["splitk_s"]), operand_bw_eff=float(d["operand_bw_eff"]),
                      occupancy_gamma=float(d.get("occupancy_gamma", 0.0)),
                      splitk_min_k=float(d.get("splitk_min_k", 128.0)),
                      splits=tuple(int(x) for x in d.get("splits", (1, 2, 4, 8, 16, 32, 64, 128, 256))),
                      fitted_on=str(d.get("fitted_on", "")))


def params_from_dict(d: dict[str, Any]) -> KernelParams:
    """A KernelParams from the JSON layout of ``kernel_params.json``."""
    return KernelParams(
        gemm={k: _gemm_params(v) for k, v in d["gemm"].items()},
        stream_eff={k: float(v) for k, v in d["stream_eff"].items()},
        gemm_floor_s=float(d["gemm_floor_s"]), stream_floor_s=float(d["stream_floor_s"]),
        conv_eff=float(d["conv_eff"]), winograd_speedup=float(d["winograd_speedup"]),
        attention_eff=float(d["attention_eff"]), simt_pj_per_flop_12nm=float(d["simt_pj_per_flop_12nm"]),
        sources=dict(d.get("sources", {})), fit=dict(d.get("fit", {})), harness=dict(d.get("harness", {})))


@lru_cache(maxsize=4)
def load_params(path: str | None = None) -> KernelParams:
    """The shipped fitted parameters (or those at ``path``)."""
    with open(path or PARAMS_PATH) as fh:
        return params_from_dict(json.load(fh))


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
@dataclass(frozen=True)
class Gemm:
    """One matrix multiply: ``b`` batches of (m x k) @ (k x n)."""
    b: int
    m: int
    n: int
    k: int

    @property
    def flops(self) -> int:
        return 2 * self.b * self.m * self.n * self.k


class _Scalar:
    """math functions with numpy's names, so one formula serves floats here and arrays in the fit."""
    ceil = staticmethod(math.ceil)
    floor = staticmethod(math.floor)
    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def where(cond: bool, a: float, b: float) -> float:
        return a if cond else b


def gemm_core(b: Any, m: Any, n: Any, k: Any, *, peak: Any, sms: Any, bw: Any, ebytes: Any,
              p: GemmParams, xp: Any = _Scalar, operand_bound: bool = True) -> Any:
    """The tile-and-wave time of GEMMs (no floor): floats with the default ``xp``, numpy arrays
    with ``xp=numpy`` (``bench/fit_cost_model.py`` fits through this same formula).

    For each candidate tile (tm, tn, CTAs per SM ``c``) and split-K factor s (only while each
    slice keeps ``splitk_min_k`` of K): ``tiles = b·ceil(m/tm)·ceil(n/tn)·s``; an SM holding
    ``r <= c`` tiles runs them at ``eff·peak/SMs·(r/c)^(1-occupancy_gamma)`` in all, so a full
    wave takes ``c·work/(eff·peak/SMs)`` and a thin one less, ``work = 2·tm·tn·(ceil(k/s) + k0)``.
    Full waves and the last, partial one add up; a split adds a reduction launch and its fp32
    partial sums. The fastest candidate wins (cuBLAS's heuristics pick well for these shapes);
    the operands' bytes over achieved bandwidth bound it below.
    """
    best = None
    g = p.occupancy_gamma
    for (tm, tn, ctas), eff in zip(p.tiles, p.tile_eff):
        per_tile = 2.0 * tm * tn
        slot = sms * ctas
        for s in p.splits:
            tiles = b * xp.ceil(m / tm) * xp.ceil(n / tn) * s
            work = per_tile * (xp.ceil(k / s) + p.k_overhead)
            full = xp.floor(tiles / slot)
            rest = tiles - full * slot
            resident = xp.ceil(rest / sms)              # tiles per SM in the last wave
            wave = ctas * work / (eff * peak / sms)
            t = full * wave + xp.where(rest > 0, wave * (resident / ctas) ** g, 0.0)
            if s > 1:
                t = xp.where(k >= p.splitk_min_k * s, t + p.splitk_s + 4.0 * b * m * n * (s + 1) / bw, math.inf)
            best = t if best is None else xp.minimum(best, t)
    if not operand_bound:
        return best
    operands = ebytes * b * (m * k + k * n + m * n) / (p.operand_bw_eff * bw)
    return xp.maximum(best, operands)


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


def _mm_gemm(base: str, shapes: Sequence[Sequence[int]], out_shapes: Sequence[Sequence[int]]) -> list[Gemm]:
    """GEMM dims of a matmul op from its input shapes (out shape as a fallback)."""
    mats = [list(s) for s in shapes if len(s) >= 1]
    if base in ("addmm", "baddbmm", "addbmm", "addmv", "addr", "_addmm_activation"):
        mats = mats[1:]                      # the added term comes first
    if base in ("mv", "addmv"):
        (a, v) = mats[:2]
        return [Gemm(1, a[0], 1, a[1])]
    if base in ("dot", "vdot"):
        return [Gemm(1, 1, 1, mats[0][0])]
    if base == "addr":
        return [Gemm(1, mats[0][0], mats[1][0], 1)]
    if len(mats) < 2:
        return []
    a, bm = mats[0], mats[1]
    if len(a) == 3 and len(bm) == 3:
        batch = a[0] if base != "addbmm" else a[0]
        return [Gemm(batch, a[1], bm[2], a[2])]
    if len(a) >= 2 and len(bm) >= 2:
        lead = 1
        for d in a[:-2]:
            lead *= d
        return [Gemm(lead, a[-2], bm[-1], a[-1])]
    return []


def conv_gemms(base: str, shapes: Sequence[Sequence[int]], out_shapes: Sequence[Sequence[int]],
               attrs: dict[str, Any] | None = None) -> list[Gemm]:
    """Implicit-GEMM dims of a convolution (forward) or its backward (dgrad and wgrad).

    Forward: M = N·Ho·Wo, N = Cout/g, K = Cin/g·kh·kw, ``g`` groups as the GEMM batch. Backward
    from (grad_out, input, weight): dgrad M = N·H·W, N = Cin/g, K = Cout/g·kh·kw; wgrad
    M = Cout/g, N = Cin/g·kh·kw, K = N·Ho·Wo. A gradient the op did not compute (no output of
    the input's or the weight's shape: the first layer has no input gradient) is left out.
    """
    groups = int((attrs or {}).get("groups", 1) or 1)
    if base in _CONV:
        if len(shapes) < 2 or not out_shapes:
            return []
        x, w, y = list(shapes[0]), list(shapes[1]), list(out_shapes[0])
        if len(x) < 3 or len(w) < 3:
            return []
        spatial_out = _prod(y[2:])
        kernel = _prod(w[2:])
        cout, cin_g = w[0], w[1]
        return [Gemm(groups, x[0] * spatial_out, cout // groups, cin_g * kernel)]
    if len(shapes) < 3:
        return []
    go, x, w = list(shapes[0]), list(shapes[1]), list(shapes[2])
    if len(go) < 3 or len(x) < 3 or len(w) < 3:
        return []
    kernel = _prod(w[2:])
    cout, cin_g = w[0], w[1]
    out: list[Gemm] = []
    outs = [list(s) for s in out_shapes]
    # undefined gradients are absent from the outputs: tell dgrad and wgrad apart by shape
    want_dx = any(o == x for o in outs) if outs else True
    want_dw = any(o == w for o in outs) if outs else True
    if want_dx:
        out.append(Gemm(groups, x[0] * _prod(x[2:]), cin_g, (cout // groups) * kernel))
    if want_dw:
        out.append(Gemm(groups, cout // groups, cin_g * kernel, go[0] * _prod(go[2:])))
    return out


def attention_gemms(base: str, shapes: Sequence[Sequence[int]], attrs: dict[str, Any] | None = None
                    ) -> list[Gemm]:
    """Fused attention over (batch, heads, seq, head_dim) inputs as one GEMM-shaped pass.

    A FlashAttention kernel keeps a tile of queries and streams the keys and values past it:
    per (batch x head) it produces the (Sq x d) output with an inner loop of ``2·Sk`` (scores
    and the weighted sum), so it is costed as ``Gemm(b·h, Sq, d, 2·Sk)``: 4·b·h·Sq·Sk·d FLOPs,
    the count torch's formulas give. Backward recomputes the scores and makes dQ, dK, dV:
    ``Gemm(b·h, Sq, d, 5·Sk)``, 10·b·h·Sq·Sk·d. The (b, s, h, d) layout of
    ``_flash_attention_*`` is read with the axes swapped.
    """
    shp = [list(s) for s in shapes if len(s) == 4]
    if base in _ATTN_BWD:
        shp = shp[1:]                        # grad_out first
    if len(shp) < 3:
        return []
    q, kk = shp[0], shp[1]
    if base.startswith("_flash_attention") or base.startswith("_efficient_attention"):
        bh, sq, sk, d = q[0] * q[2], q[1], kk[1], q[3]
    else:
        bh, sq, sk, d = q[0] * q[1], q[2], kk[2], q[3]
    return [Gemm(bh, sq, d, (5 if base in _ATTN_BWD else 2) * sk)]


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


def rnn_gemms(shapes: Sequence[Sequence[int]], backward: bool = False) -> list[Gemm]:
    """A fused RNN layer over (T, B, I) inputs with W_ih (G*H, I) and W_hh (G*H, H): one input
    projection GEMM for all T*B tokens, then T recurrent (B x H) @ (H x G*H) GEMMs that cannot
    run in parallel (each step needs the last one's hidden state). Backward runs the transposed
    recurrent chain plus the input and weight gradients. ``shapes[0]`` is taken as (T, B, I)."""
    if len(shapes) < 3 or len(shapes[0]) < 2 or len(shapes[1]) != 2 or len(shapes[2]) != 2:
        return []
    x, w_ih, w_hh = shapes[0], shapes[1], shapes[2]
    t, b = int(x[0]), int(_prod(x[1:-1]) or 1)
    gh, i, h = int(w_ih[0]), int(w_ih[1]), int(w_hh[1])
    if not backward:
        return [Gemm(1, t * b, gh, i)] + [Gemm(1, b, gh, h)] * t
    return ([Gemm(1, b, h, gh)] * t + [Gemm(1, t * b, i, gh), Gemm(1, gh, i, t * b), Gemm(1, gh, h, t * b)])


def _prod(xs: Iterable[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _is_winograd(shapes: Sequence[Sequence[int]], out_shapes: Sequence[Sequence[int]], base: str) -> bool:
    """A 3x3 stride-1 convolution: cuDNN may run it as Winograd (fp32 only)."""
    if base in _CONV:
        if len(shapes) < 2 or not out_shapes:
            return False
        w, x, y = list(shapes[1]), list(shapes[0]), list(out_shapes[0])
    else:
        if len(shapes) < 3:
            return False
        w, x, y = list(shapes[2]), list(shapes[1]), list(shapes[0])
    return len(w) == 4 and w[2] == w[3] == 3 and len(x) == 4 and len(y) == 4 and x[2:] == y[2:]


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
