"""GEMM-like kernels: the GEMMs one op call runs (from its shapes) and their tile-and-wave time.

Matmuls give their (b, m, n, k) directly; convolutions are implicit GEMMs (forward, dgrad,
wgrad); fused attention is one GEMM-shaped pass per (batch x head); a fused RNN layer is an
input projection plus one small GEMM per time step. :func:`gemm_core` is the tile-and-wave
formula that ``kernels.gemm_s`` applies with a GPU's figures and ``bench/fit_cost_model.py``
fits through with numpy arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ccprof.hardware._kernel_ops import _ATTN_BWD, _CONV
from ccprof.hardware._kernel_params import GemmParams


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
