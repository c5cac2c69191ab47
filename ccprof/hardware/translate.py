"""What the target GPU would run for the profiled step: the CPU op list as CUDA kernels.

A CPU profile records the kernels the CPU ran. A GPU runs different ones for the same step,
and the cost model costs those (PyTorch's CUDA semantics notes, "TensorFloat-32 (TF32) on Ampere
(and later) devices", and torch.optim's foreach default on CUDA tensors):

* precision: cuDNN convolutions in TF32 (``torch.backends.cudnn.allow_tf32`` defaults to True);
  fp32 matmuls in TF32 only as the script set it; under autocast, every op by PyTorch's autocast
  lists with the bytes it would move then, plus the casts autocast adds (recorded by the
  profiler as ``OpCost.autocast``/``autocast_bytes``);
* the optimizer: torch.optim runs ``foreach`` kernels on CUDA tensors unless told otherwise (one
  launch per group of tensors, not per parameter), or one fused kernel with ``fused=True``;
  step counters stay on the host (``capturable=False``);
* attention: the CPU's ``_scaled_dot_product_flash_attention_for_cpu`` becomes FlashAttention in
  16-bit, the memory-efficient kernel in fp32.

:func:`translate` returns :class:`Kernel` rows (per-call device seconds from
``ccprof.hardware.kernels``, call counts, launches and host dispatches by phase); ``step.py``
turns them into phase times.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable

from ccprof.artefacts.profile import OpCost, OptimizerInfo, Profile
from ccprof.artefacts.vocab import MATMUL_CLASSES
from ccprof.hardware import kernels as K
from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.inputs import StepInputs, step_inputs

__all__ = ["Policy", "Kernel", "policy_for", "translate", "row_kernels", "optimizer_kernels", "FOREACH_MAX_TENSORS",
           "FOREACH_MAX_ELEMS", "FUSED_BYTES_PER_ELEM"]

# multi_tensor_apply (aten/src/ATen/native/cuda/MultiTensorApply.cuh): one launch takes at most
# depth_to_max_tensors[depth-1] tensors and 320 blocks of 65,536 elements (kChunkSize).
FOREACH_MAX_TENSORS = (110, 64, 48, 36, 30)
FOREACH_MAX_ELEMS = 320 * 65536
# Bytes per parameter element of a fused update (fp32 state): Adam/AdamW read param, grad,
# exp_avg, exp_avg_sq and write param, exp_avg, exp_avg_sq (7 x 4); SGD with momentum reads
# param, grad, buffer and writes param, buffer (5 x 4); Adagrad like SGD (aten _fused_adam_,
# _fused_sgd_, _fused_adagrad_ kernels).
FUSED_BYTES_PER_ELEM = {"Adam": 28, "AdamW": 28, "SGD": 20, "Adagrad": 20}


@dataclass(frozen=True)
class Policy:
    """How the step would run on the GPU: the knobs the tweaks turn.

    ``autocast``: ``"bfloat16"``/``"float16"``/None. ``tf32_matmul``: fp32 matmuls on TF32
    (``set_float32_matmul_precision("high")``). ``tf32_cudnn``: convolutions on TF32 (PyTorch's
    CUDA default True). ``optimizer``: ``"foreach"`` (CUDA default), ``"fused"`` or
    ``"for_loop"``. ``compiled``: torch.compile's fusion of the non-matmul ops between matmuls.
    """
    autocast: str | None = None
    tf32_matmul: bool = False
    tf32_cudnn: bool = True
    optimizer: str = "foreach"
    compiled: bool = False

    def describe(self) -> str:
        parts = [f"autocast {self.autocast}" if self.autocast else "no autocast",
                 "TF32 matmuls" if self.tf32_matmul else "fp32 matmuls",
                 "TF32 convolutions" if self.tf32_cudnn else "fp32 convolutions",
                 f"{self.optimizer} optimizer"]
        if self.compiled:
            parts.append("torch.compile fusion")
        return ", ".join(parts)


@dataclass(frozen=True)
class Kernel:
    """One translated op row: ``calls`` launches of ``per_call_s`` device seconds, and the host
    dispatches that issue them (``dispatches``; foreach ops issue many launches per dispatch)."""
    op: str
    cls: str
    phase: str
    dtype: str
    calls: int
    per_call_s: float
    dispatches: int
    flops: int
    nbytes: int
    unit: str = ""
    in_model: bool = True       # its op ran inside the model's modules (what torch.compile(model) compiles)

    @property
    def device_s(self) -> float:
        return self.calls * self.per_call_s


def _low_dtype(spec: GpuSpec, wanted: str) -> str:
    """bfloat16 where the GPU has bf16 units, else float16 (T4, V100)."""
    if wanted == "bfloat16" and "bf16" not in spec.peak_flops and "fp16" in spec.peak_flops:
        return "float16"
    return wanted


def policy_for(profile: Profile | StepInputs, spec: GpuSpec | None = None) -> Policy:
    """The policy the profiled script would run with on a CUDA GPU (``profile``: a Profile or
    its StepInputs: the precision, the optimizers, the device, whether the run compiled).

    Autocast as seen in the run (its dtype; float16 where the GPU has no bf16 units); TF32
    matmuls as the script set them; cuDNN TF32 as the flag stands (True unless the script
    turned it off); the optimizer's implementation as constructed (``fused``/``foreach``
    flags; unset means foreach on CUDA); torch.compile when the run compiled the model.
    """
    inputs = step_inputs(profile)
    p = inputs.precision
    autocast = None
    if p.autocast:
        autocast = p.autocast_dtype or "float16"
    elif p.param_dtype in ("bfloat16", "float16"):
        autocast = None                      # the weights are 16-bit: the recorded dtypes already say so
    if autocast and spec is not None:
        autocast = _low_dtype(spec, autocast)
    opts = inputs.optimizers
    impl = "foreach"
    if opts and all(o.fused for o in opts):
        impl = "fused"
    elif opts and all(o.foreach is False for o in opts):
        impl = "for_loop"
    compiled = inputs.model.compiled
    return Policy(autocast=autocast,
                  tf32_matmul=bool(p.tf32_matmul or p.float32_matmul_precision in ("high", "medium")),
                  tf32_cudnn=bool(p.cudnn_allow_tf32 if p.cudnn_allow_tf32 is not None
                                  else (p.tf32_cudnn or inputs.device.type != "cuda")),
                  optimizer=impl, compiled=compiled)




def _dtype_and_bytes(op: OpCost, policy: Policy, spec: GpuSpec) -> tuple[str, int] | None:
    """The op's compute dtype and bytes under the policy; None when it would not run.

    Autocast never touches float64: an op recorded in float64 keeps its dtype and bytes, and
    the casts recorded for float64 tensors (what autocast would add once they are float32) do
    not run (``is_eligible`` in aten/src/ATen/autocast_mode.h skips ``kDouble`` tensors).
    """
    if op.dtype == "float64":
        return None if op.autocast == "cast" else (op.dtype, op.bytes)
    if op.autocast == "cast":
        if not policy.autocast:
            return None
        return policy.autocast, op.autocast_bytes
    if policy.autocast and op.autocast in ("low", "fp32") and op.autocast_bytes:
        low = op.autocast == "low"
        return (_low_dtype(spec, policy.autocast) if low else "float32"), op.autocast_bytes
    if policy.autocast and not op.autocast and op.dtype == "float32" and K.op_class(op.op) in MATMUL_CLASSES:
        # a row recorded without autocast tags (older profiles): matmuls go 16-bit, bytes halved
        return _low_dtype(spec, policy.autocast), op.bytes // 2
    dtype = op.dtype
    if dtype in ("bfloat16", "float16"):
        dtype = _low_dtype(spec, dtype)
    return dtype, op.bytes


def _foreach_launches(calls: int, shapes: list[list[int]], in_place: bool, per_call_elems: int) -> int:
    """Launches of one foreach op over ``calls`` per-parameter calls of the same shape."""
    tensors = max(1, sum(1 for s in shapes if s))
    depth = min(len(FOREACH_MAX_TENSORS), tensors + (0 if in_place else 1))
    by_tensors = math.ceil(calls / FOREACH_MAX_TENSORS[depth - 1])
    by_elems = math.ceil(calls * max(per_call_elems, 1) / FOREACH_MAX_ELEMS)
    return max(1, by_tensors, by_elems)


def optimizer_kernels(ops: list[OpCost], opts: tuple[OptimizerInfo, ...], policy: Policy, spec: GpuSpec,
                      params: K.KernelParams) -> list[tuple[list[OpCost], Kernel]]:
    """The optimizer step as the policy's implementation would launch it on the GPU: each Kernel
    with the recorded optimizer rows it runs (a foreach or fused kernel runs several; a
    per-parameter loop one each)."""
    out: list[tuple[list[OpCost], Kernel]] = []
    vector = [o for o in ops if any(s for s in o.shapes)]          # 0-dim step counters stay on the host
    counters = [o for o in ops if not any(s for s in o.shapes)]
    host_only = sum(o.count for o in counters)
    if host_only:
        out.append((counters, Kernel("step counters (host)", "host", "optimizer", "float32", 0, 0.0, host_only, 0, 0)))
    recorded_foreach = any(K.op_base(o.op).startswith(("_foreach_", "_fused_")) for o in vector)
    if policy.optimizer == "fused" and not any(K.op_base(o.op).startswith("_fused_") for o in vector):
        elems = sum(o.param_count for o in opts)
        per = max((FUSED_BYTES_PER_ELEM.get(o.class_, 28) for o in opts), default=28)
        tensors = max(1, len({tuple(map(tuple, o.shapes)) for o in vector}) and
                      max((o.count for o in vector), default=1))
        launches = max(1, math.ceil(tensors / FOREACH_MAX_TENSORS[-2]), math.ceil(elems / FOREACH_MAX_ELEMS))
        nbytes = per * elems
        per_call = K.stream_s(nbytes / launches, "elementwise", spec, params)
        out.append((vector, Kernel("_fused_adamw_ (projected)", "fused_optimizer", "optimizer", "float32", launches,
                                   per_call, max(1, len(opts)), 0, nbytes)))
        return out
    if policy.optimizer == "for_loop" or recorded_foreach:
        for o in vector:
            dtype, nbytes = _dtype_and_bytes(o, Policy(), spec) or (o.dtype, o.bytes)
            calls = max(o.count, 1)
            per_call = K.stream_s(nbytes / calls, "elementwise", spec, params)
            out.append(([o], Kernel(o.op, K.op_class(o.op), "optimizer", dtype, calls, per_call, calls, o.flops,
                                    nbytes)))
        return out
    # foreach: the per-parameter calls of one op kind become chunked multi-tensor launches
    groups: dict[str, list[OpCost]] = {}
    for o in vector:
        groups.setdefault(o.op, []).append(o)
    for name, rows in groups.items():
        calls = sum(o.count for o in rows)
        nbytes = sum(o.bytes for o in rows)
        elems = sum(o.count * K._prod(o.shapes[0]) for o in rows if o.shapes and o.shapes[0])
        launches = _foreach_launches(calls, rows[0].shapes, name.endswith("_"), elems // max(calls, 1))
        per_call = K.stream_s(nbytes / launches, "elementwise", spec, params)
        base = K.op_base(name)
        out.append((rows, Kernel(f"aten._foreach_{base.rstrip('_')}{'_' if base.endswith('_') else ''} (projected)",
                                 "foreach", "optimizer", rows[0].dtype, launches, per_call, 1,
                                 sum(o.flops for o in rows), nbytes)))
    return out


def translate(profile: Profile | StepInputs, spec: GpuSpec, policy: Policy | None = None, *,
              ops: Iterable[OpCost] | None = None, params: K.KernelParams | None = None) -> list[Kernel]:
    """The step's ops as ``spec`` would run them under ``policy`` (default :func:`policy_for`).

    Inputs: the profile or its StepInputs (its ``ops``, or ``ops`` given here: an edited op list
    a tweak produced), a GpuSpec and a Policy. Output: Kernel rows, one per recorded row (the optimizer
    phase regrouped by the implementation). View ops are dropped; host-only ops (syncs such as
    ``.item()``) keep their host dispatch and no device time.
    """
    inputs = step_inputs(profile)
    policy = policy or policy_for(inputs, spec)
    params = params or K.load_params()
    rows = list(inputs.ops if ops is None else ops)
    kernels = [k for _, k in row_kernels(rows, spec, policy, params)]
    kernels += [k for _, k in optimizer_kernels([o for o in rows if regrouped(o)], inputs.optimizers,
                                                 policy, spec, params)]
    return kernels


def regrouped(op: OpCost) -> bool:
    """An optimizer row the optimizer's implementation regroups (:func:`optimizer_kernels`); a
    collective in the optimizer phase (a gradient-norm clip's all-reduce) is costed as itself."""
    return op.phase == "optimizer" and K.op_class(op.op) != "collective"


def row_kernels(rows: Iterable[OpCost], spec: GpuSpec, policy: Policy,
                params: K.KernelParams) -> list[tuple[OpCost, Kernel]]:
    """Each non-optimizer row with the Kernel it becomes on ``spec`` (views, the DataLoader's
    work and rows with nothing to run are left out): what :func:`translate` costs, row by row."""
    out: list[tuple[OpCost, Kernel]] = []
    for op in rows:
        if regrouped(op):
            continue        # the optimizer is regrouped by translate
        if op.phase == "data":
            continue        # the DataLoader's work is its batch time
        cls = K.op_class(op.op)
        if cls == "view":
            continue
        got = _dtype_and_bytes(op, policy, spec)
        if got is None:
            continue
        dtype, nbytes = got
        calls = max(op.count, 1)
        if cls == "host":
            out.append((op, Kernel(op.op, cls, op.phase, dtype, 0, 0.0, calls, 0, 0)))
            continue
        tf32 = dtype == "float32" and (policy.tf32_cudnn if cls.startswith("conv") else policy.tf32_matmul)
        per_call = K.kernel_s(op.op, op.shapes, dtype, spec, params, out_shapes=op.out_shapes, attrs=op.attrs,
                              nbytes=nbytes / calls, tf32=tf32, flops=op.flops / calls)
        unit = K.math_unit(dtype, spec, tf32=tf32) if K.gemms_of(op.op, op.shapes, op.out_shapes, op.attrs) else ""
        out.append((op, Kernel(op.op, cls, op.phase, dtype, calls, per_call, calls, op.flops, nbytes, unit,
                               in_model=bool(op.modules))))
    return out


def scaled(kernels: list[Kernel], factor: float) -> list[Kernel]:
    """Kernels with their device time scaled (the measured-GPU recalibration)."""
    return [replace(k, per_call_s=k.per_call_s * factor) for k in kernels]
