"""tf32: let fp32 matmuls and cuDNN convolutions use TF32 tensor cores (Ampere and newer).

TF32 exists on NVIDIA GPUs of compute capability 8.0+ (A100 datasheet); it keeps fp32's
range with a 10-bit mantissa. Process-global switches, so the marker on the model is what
makes a second application a no-op.
"""
from __future__ import annotations

import torch

from ccprof.applier.runtime._base import Applied, RunObjects, model_device, not_applied, register

__all__ = ["apply_tf32"]

TWEAK = "tf32"
MIN_CAPABILITY = (8, 0)   # Ampere: first architecture with TF32 tensor cores (NVIDIA A100 datasheet)


@register(TWEAK)
def apply_tf32(objs: RunObjects) -> Applied:
    """Switch fp32 matmuls to TF32 (``set_float32_matmul_precision("high")``) and cuDNN too.

    Output: Applied; not applied on CPU, pre-Ampere GPUs, or when already on.
    Example: ``apply_tf32(RunObjects(model))``.
    """
    dev = model_device(objs.model)
    if dev.type != "cuda":
        return not_applied(TWEAK, f"TF32 is an NVIDIA tensor-core format; this run is on {dev.type}")
    cap = torch.cuda.get_device_capability(dev)
    if cap < MIN_CAPABILITY:
        return not_applied(TWEAK, f"{torch.cuda.get_device_name(dev)} (compute capability "
                           f"{cap[0]}.{cap[1]}) has no TF32; it needs 8.0 (Ampere) or newer")
    prec = torch.get_float32_matmul_precision()
    if prec != "highest" and torch.backends.cudnn.allow_tf32:
        return not_applied(TWEAK, f"TF32 is already on (float32_matmul_precision={prec!r})", already=True)
    changes = []
    if prec == "highest":
        torch.set_float32_matmul_precision("high")
        changes.append("torch.set_float32_matmul_precision('high'): fp32 matmuls use TF32")
    if not torch.backends.cudnn.allow_tf32:
        torch.backends.cudnn.allow_tf32 = True
        changes.append("torch.backends.cudnn.allow_tf32 = True")
    return Applied(TWEAK, True, "TF32 matmuls on", changes)
