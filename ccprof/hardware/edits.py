"""What a tweak does to the ops of a step, as edits of the recorded op list.

The advisors project a tweak by editing the op list and costing it again with the one cost
model (``step.cost_step``), never by a constant. Each edit is a pure function from
``list[OpCost]`` to ``list[OpCost]`` and says what it assumes:

* :func:`scale_batch` -- a batch ``k`` times larger (``batch_size``; ``grad_accumulation``'s
  micro-batches with ``k < 1``): what grows with the batch is found from the recorded shapes,
  ``OpCost.fixed`` marking the tensors of a parameter's shape that do not;
* :func:`micro_batches` -- the same batch in ``k`` micro-batches (more, smaller launches, and the
  gradient accumulation adds);
* :func:`recompute` -- activation checkpointing: the forward of the checkpointed blocks again,
  inside backward;
* :func:`freeze_weights` -- some weights frozen (warm_start's embeddings and the head tied to them):
  no gradients for them, a smaller optimizer;
* :func:`freeze_base` -- LoRA: no weight gradients for frozen weights, an optimizer over the
  adapters only, and the adapters' own small GEMMs;
* :func:`shrink_blocks` -- a share of the repeated blocks kept (distillation's shallower student);
* :func:`narrow_blocks` -- the blocks' weights narrower (structured pruning);
* :func:`to_float32` -- a float64 model made float32 (``mixed_precision``'s first lever on a
  float64 script: autocast leaves float64 alone).

Two edits change what the op list does not hold, on the cost model's inputs
(:class:`~ccprof.hardware.inputs.StepInputs`) instead of a copy of the Profile:

* :func:`with_workers` -- the DataLoader with ``n`` workers (``dataloader``);
* :func:`bigger_batch` -- a batch ``k`` times larger: its ops (:func:`scale_batch`), its making
  and its bytes (``batch_size``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from ccprof.artefacts.profile import OpCost
from ccprof.artefacts.vocab import COMPUTE_PHASES
from ccprof.hardware import kernels as K
from ccprof.hardware.inputs import StepInputs

__all__ = ["scale_batch", "micro_batches", "recompute", "freeze_weights", "freeze_base", "shrink_blocks", "narrow_blocks",
           "in_scopes", "linear_gemms", "with_workers", "bigger_batch", "to_float32"]


def _numel(shape: list[int]) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def _grow(op: OpCost, k: float) -> tuple[list[list[int]], list[list[int]], float]:
    """New input/output shapes of ``op`` at ``k`` x the batch, and the share of its bytes that grows."""
    n_in = len(op.shapes)
    fixed = set(op.fixed)
    shapes = [list(s) for s in op.shapes]
    outs = [list(s) for s in op.out_shapes]
    tensors = shapes + outs
    cls = K.op_class(op.op)
    base = K.op_base(op.op)

    def scale(t: list[int], dim: int) -> None:
        if t and dim < len(t):
            t[dim] = max(1, round(t[dim] * k))

    if cls == "gemm" and base in ("mm", "addmm") and len(shapes) >= 2:
        mats = [i for i, s in enumerate(shapes) if len(s) == 2]
        a, b = (mats[-2], mats[-1]) if len(mats) >= 2 else (0, 1)
        out = n_in if outs else None
        if b in fixed:                                     # x @ W^T: tokens grow
            scale(shapes[a], 0)
            if out is not None:
                scale(outs[0], 0)
            if base == "addmm" and len(shapes[0]) == 2 and 0 not in fixed:
                scale(shapes[0], 0)
        elif a in fixed:                                   # W @ x^T
            scale(shapes[b], 1)
            if out is not None:
                scale(outs[0], 1)
        elif out is not None and out in fixed:             # a weight gradient: the contraction grows
            scale(shapes[a], 1)
            scale(shapes[b], 0)
        else:
            scale(shapes[a], 0)
            if out is not None:
                scale(outs[0], 0)
    else:
        for i, t in enumerate(tensors):
            if i not in fixed and t:
                scale(t, 0)
    grow = sum(_numel(t) for i, t in enumerate(tensors) if i not in fixed and t)
    total = sum(_numel(t) for t in tensors if t) or 1
    if cls == "gemm" and op.out_shapes and n_in in fixed:
        grow = sum(_numel(t) for t in shapes if t)         # the weight gradient itself stays
    return shapes[:n_in], outs, grow / total


def scale_batch(ops: Iterable[OpCost], k: float) -> list[OpCost]:
    """The step at ``k`` times the batch: every forward and backward op grows where its shapes
    hold the batch (the tokens of a Linear, the batch of a convolution or attention, the
    contraction of a weight gradient); tensors of a parameter's shape and the optimizer step
    stay. FLOPs scale by ``k`` (those of ops with a fixed weight gradient too: their contraction
    is the batch); bytes scale for the share of each op's tensors that grows.

    Example: a Linear's forward ``mm([512, 768], [768, 3072])`` becomes ``mm([1024, 768], ...)``
    at ``k=2``.
    """
    out: list[OpCost] = []
    for op in ops:
        if op.phase == "optimizer" or k == 1:
            out.append(op)
            continue
        shapes, outs, share = _grow(op, k)
        factor = 1 - share + share * k
        out.append(replace(op, shapes=shapes, out_shapes=outs, flops=int(op.flops * k),
                           bytes_read=int(op.bytes_read * factor), bytes_written=int(op.bytes_written * factor),
                           autocast_bytes=int(op.autocast_bytes * factor)))
    return out


def to_float32(ops: Iterable[OpCost]) -> list[OpCost]:
    """The step with its float64 ops in float32: the same shapes and FLOPs, half the bytes.

    Assumes every tensor a float64 op moves is floating point (the integer indices of an
    embedding or a loss are a small part); the autocast tags stay (the profiler records a
    float64 op's autocast bytes as it would be once float32), and the casts recorded for
    float64 tensors become float32 casts, so autocast can be costed on the result.
    Example: ``addmm`` float64 reading 3 MB -> float32 reading 1.5 MB.
    """
    out: list[OpCost] = []
    for op in ops:
        if op.dtype != "float64":
            out.append(op)
        elif op.autocast == "cast":
            out.append(replace(op, dtype="float32"))
        else:
            out.append(replace(op, dtype="float32", bytes_read=op.bytes_read // 2, bytes_written=op.bytes_written // 2))
    return out


def micro_batches(ops: Iterable[OpCost], k: int) -> list[OpCost]:
    """The same step as ``k`` micro-batches of 1/k of the batch, one optimizer step at the end.

    Forward and backward ops run ``k`` times on shapes 1/k as large; every weight gradient after
    the first micro-batch is added into ``.grad`` (an elementwise add reading both and writing one:
    3 x its bytes).
    """
    if k <= 1:
        return list(ops)
    small = scale_batch(ops, 1.0 / k)
    out: list[OpCost] = []
    for op in small:
        if op.phase == "optimizer":
            out.append(op)
            continue
        out.append(replace(op, count=op.count * k, flops=op.flops * k, bytes_read=op.bytes_read * k,
                           bytes_written=op.bytes_written * k, autocast_bytes=op.autocast_bytes * k))
        n_in = len(op.shapes)
        if op.phase == "backward" and op.out_shapes and n_in in op.fixed and K.op_class(op.op) in ("gemm", "conv_backward"):
            grad = op.out_shapes[-1 if K.op_class(op.op) == "conv_backward" else 0]
            nbytes = 4 * _numel(grad)
            out.append(OpCost("aten.add_", "float32", count=op.count * (k - 1), flops=0,
                              bytes_read=2 * nbytes * op.count * (k - 1), bytes_written=nbytes * op.count * (k - 1),
                              phase="backward", shapes=[list(grad), list(grad)], out_shapes=[list(grad)],
                              fixed=[0, 1, 2], scope=op.scope, autocast="fp32",
                              autocast_bytes=3 * nbytes * op.count * (k - 1)))
    return out


def in_scopes(op: OpCost, scopes: Iterable[str]) -> bool:
    """True when the op ran in one of ``scopes`` (container names like ``transformer.h``)."""
    for s in scopes:
        if not s:                                  # blocks directly under the root (nn.Sequential)
            if op.scope == "*" or op.scope.startswith("*"):
                return True
        elif op.scope == f"{s}.*" or op.scope == s or op.scope.startswith(f"{s}."):
            return True
    return False


def recompute(ops: Iterable[OpCost], scopes: Iterable[str]) -> list[OpCost]:
    """Activation checkpointing of the blocks in ``scopes``: their forward ops run again in
    backward (non-reentrant ``torch.utils.checkpoint``), marked ``recompute``."""
    scopes = list(scopes)
    ops = list(ops)
    extra = [replace(op, phase="backward", recompute=True) for op in ops
             if op.phase == "forward" and not op.recompute and op.autocast != "cast" and in_scopes(op, scopes)]
    return ops + extra


def linear_gemms(ops: Iterable[OpCost], *, exclude_scopes: Iterable[str] = ()) -> list[OpCost]:
    """Forward GEMMs against a weight (a Linear, or a tied head): ``x [T, in] @ W^T [in, out]``."""
    ex = list(exclude_scopes)
    out = []
    for op in ops:
        if op.phase != "forward" or K.op_class(op.op) != "gemm" or K.op_base(op.op) not in ("mm", "addmm"):
            continue
        mats = [i for i, s in enumerate(op.shapes) if len(s) == 2]
        if len(mats) >= 2 and mats[-1] in op.fixed and not (ex and in_scopes(op, ex)):
            out.append(op)
    return out


def _gemm_row(name: str, phase: str, m: int, n: int, k: int, count: int, scope: str, dtype: str,
              fixed_out: bool = False) -> OpCost:
    """A synthetic GEMM row ``[m, k] @ [k, n]`` (fp32 bytes; 16-bit under autocast)."""
    elems = m * k + k * n + m * n
    return OpCost(name, dtype, count=count, flops=2 * m * n * k * count, bytes_read=4 * (m * k + k * n) * count,
                  bytes_written=4 * m * n * count, phase=phase, shapes=[[m, k], [k, n]], out_shapes=[[m, n]],
                  fixed=[2] if fixed_out else [], scope=scope, autocast="low", autocast_bytes=2 * elems * count)


def _weight_grad(op: OpCost) -> bool:
    """A backward op that produces a parameter's gradient (every output has a parameter's shape)."""
    n_in = len(op.shapes)
    return op.phase == "backward" and bool(op.out_shapes) and all(
        i in op.fixed for i in range(n_in, n_in + len(op.out_shapes)))


def freeze_weights(ops: Iterable[OpCost], scopes: Iterable[str] | None, trainable_frac: float) -> list[OpCost]:
    """The weights of the modules in ``scopes`` frozen (every weight when None): no backward op that
    produces their gradients (a Linear's ``dW``, ``embedding_dense_backward``, a tied weight's
    gradient sum), and an optimizer over ``trainable_frac`` of what it updated (its calls and bytes
    scale). The activation gradients stay: the layers below still train.

    Example: warm_start freezing GPT-2's tied ``transformer.wte`` drops the LM head's ``dW`` GEMM too:
    ``freeze_weights(ops, ["transformer.wte", "lm_head"], 0.76)``.
    """
    scopes = None if scopes is None else list(scopes)
    f = max(0.0, min(1.0, trainable_frac))
    out: list[OpCost] = []
    for op in ops:
        if _weight_grad(op) and (scopes is None or in_scopes(op, scopes)):
            continue                                  # a gradient of a frozen parameter
        if op.phase == "optimizer":
            out.append(replace(op, count=max(1, round(op.count * f)), bytes_read=int(op.bytes_read * f),
                               bytes_written=int(op.bytes_written * f), autocast_bytes=int(op.autocast_bytes * f)))
            continue
        out.append(op)
    return out


def freeze_base(ops: Iterable[OpCost], rank: int, trainable_frac: float, *,
                exclude_scopes: Iterable[str] = ()) -> list[OpCost]:
    """LoRA: every base weight frozen, rank-``rank`` adapters on the Linears outside ``exclude_scopes``.

    Removed: every backward op that produces a parameter's gradient (``OpCost.fixed`` on its
    output) and the gradient accumulation into ``.grad``. Kept: the activation gradients (the
    adapters need them). The optimizer phase shrinks to ``trainable_frac`` of its calls and bytes.
    Added, per targeted Linear ``x [T, in] @ W^T``: ``x @ A [in, r]`` and ``(x A) @ B [r, out]`` in
    forward, and in backward dB, d(xA), dA and the input's gradient through A.
    """
    ops = list(ops)
    out = freeze_weights(ops, None, trainable_frac)
    for lin in linear_gemms(ops, exclude_scopes=exclude_scopes):
        mats = [s for s in lin.shapes if len(s) == 2]
        (t, d_in), (_, d_out) = mats[-2], mats[-1]
        c, sc, dt = lin.count, lin.scope, lin.dtype
        out += [
            _gemm_row("aten.mm", "forward", t, rank, d_in, c, sc, dt),              # h = x A
            _gemm_row("aten.mm", "forward", t, d_out, rank, c, sc, dt),             # y += h B
            _gemm_row("aten.mm", "backward", rank, d_out, t, c, sc, dt, True),      # dB = h^T g
            _gemm_row("aten.mm", "backward", t, rank, d_out, c, sc, dt),            # dh = g B^T
            _gemm_row("aten.mm", "backward", d_in, rank, t, c, sc, dt, True),       # dA = x^T dh
            _gemm_row("aten.mm", "backward", t, d_in, rank, c, sc, dt),             # dx += dh A^T
        ]
    return out


def shrink_blocks(ops: Iterable[OpCost], scopes: Iterable[str], keep: float, *,
                  phases: tuple[str, ...] = COMPUTE_PHASES) -> list[OpCost]:
    """Keep ``keep`` of the repeated blocks in ``scopes``: their ops run ``keep`` as many times
    (a shallower stack runs the same kernels on the same shapes, fewer of them). The optimizer
    phase shrinks with the blocks' share of it, taken as their share of the forward bytes."""
    scopes = list(scopes)
    ops = list(ops)
    fwd = sum(o.bytes for o in ops if o.phase == "forward") or 1
    blk = sum(o.bytes for o in ops if o.phase == "forward" and in_scopes(o, scopes))
    opt_keep = 1 - (1 - keep) * blk / fwd
    out = []
    for op in ops:
        if op.phase == "optimizer" and "optimizer" in phases:
            f = opt_keep
        elif op.phase in phases and op.phase != "optimizer" and in_scopes(op, scopes):
            f = keep
        else:
            out.append(op)
            continue
        count = max(0, round(op.count * f))
        if count == 0:
            continue
        g = count / op.count
        out.append(replace(op, count=count, flops=int(op.flops * g), bytes_read=int(op.bytes_read * g),
                           bytes_written=int(op.bytes_written * g), autocast_bytes=int(op.autocast_bytes * g)))
    return out


def narrow_blocks(ops: Iterable[OpCost], scopes: Iterable[str], keep: float) -> list[OpCost]:
    """Structured pruning that keeps ``keep`` of each block weight's elements, costed as both of
    the weight's dimensions shrinking by sqrt(keep): a block GEMM's FLOPs and its weight scale by
    ``keep``, the activations between block layers by sqrt(keep). Dims of a weight's size are
    rescaled wherever they appear in a block op; ops outside the blocks stay."""
    scopes = list(scopes)
    f = max(keep, 0.0) ** 0.5
    ops = list(ops)
    dims: set[int] = set()
    for op in ops:
        if in_scopes(op, scopes) and K.op_class(op.op) == "gemm":
            for i in op.fixed:
                t = (op.shapes + op.out_shapes)[i] if i < len(op.shapes) + len(op.out_shapes) else []
                if len(t) == 2:
                    dims.update(t)
    out = []
    for op in ops:
        if not in_scopes(op, scopes) or op.phase not in COMPUTE_PHASES:
            out.append(op)
            continue
        shrink = lambda t: [max(1, round(d * f)) if d in dims else d for d in t]  # noqa: E731
        shapes = [shrink(t) for t in op.shapes]
        outs = [shrink(t) for t in op.out_shapes]
        before = sum(_numel(t) for t in (*op.shapes, *op.out_shapes) if t) or 1
        after = sum(_numel(t) for t in (*shapes, *outs) if t)
        g = after / before
        fl = keep if K.op_class(op.op) in ("gemm", "attention", "attention_backward") else g
        out.append(replace(op, shapes=shapes, out_shapes=outs, flops=int(op.flops * fl),
                           bytes_read=int(op.bytes_read * g), bytes_written=int(op.bytes_written * g),
                           autocast_bytes=int(op.autocast_bytes * g)))
    return out


def with_workers(inputs: StepInputs, workers: int) -> StepInputs:
    """The step with the DataLoader making batches in ``workers`` processes (its batch time as
    measured: each worker makes a batch as fast as the main process did)."""
    return replace(inputs, data=replace(inputs.data, num_workers=workers))


def bigger_batch(inputs: StepInputs, k: float) -> StepInputs:
    """The step at ``k`` times the batch: the ops by :func:`scale_batch`, a batch's making and its
    bytes ``k`` times as large, its band too (the making's interval is left as measured)."""
    d = inputs.data
    data = replace(d, batch_s=d.batch_s * k,
                   batch_s_lo=d.batch_s_lo * k if d.batch_s_lo is not None else None,
                   batch_s_hi=d.batch_s_hi * k if d.batch_s_hi is not None else None,
                   batch_bytes=int((d.batch_bytes or 0) * k) or None) if d.batch_s else d
    return replace(inputs, ops=tuple(scale_batch(inputs.ops, k)), data=data)
