"""mixed_precision: run the live model's forward under torch.autocast.

bf16 by default (CPU, and CUDA GPUs that support it); fp16 on older GPUs, with dynamic
loss scaling done without touching the user's loop: the gradient entering the model's
outputs is multiplied by the scale (so the user's ``loss.backward()`` backpropagates a
scaled loss through the fp16 activations), every trainable parameter's gradient is divided
by it before accumulation (so clipping and the optimizer see true gradients), and the
user's optimizer's ``step`` is wrapped to skip a step whose gradients overflowed and back
the scale off — the GradScaler policy (init 2**16, x0.5 on overflow, x2 after 2000 clean
steps; torch.amp.GradScaler defaults).

Outputs leave the autocast region as float32, so a loss computed by the user's code runs
in fp32 (accelerate's ``convert_outputs_to_fp32`` does the same).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ccprof.applier.runtime._base import (
    Applied,
    RunObjects,
    map_tensors,
    model_device,
    not_applied,
    note,
    param_dtype,
    register,
    state,
    wrap_forward,
)
from ccprof.artefacts.vocab import normalize_dtype

__all__ = ["apply_mixed_precision"]

TWEAK = "mixed_precision"
# torch.amp.GradScaler defaults (torch/amp/grad_scaler.py)
INIT_SCALE = 2.0 ** 16
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5
GROWTH_INTERVAL = 2000


class _LossScaler:
    """Dynamic loss scale shared by the forward wrapper, the param hooks and the step wrapper."""

    def __init__(self, model: nn.Module, init_scale: float, growth_interval: int) -> None:
        self.model = model
        self.scale = float(init_scale)
        self.growth_interval = growth_interval
        self.good_steps = 0
        self.skipped_steps = 0
        self._hooked: set[int] = set()

    def hook_params(self) -> None:
        """Unscale each trainable parameter's gradient before it is accumulated (new params too)."""
        for p in self.model.parameters():
            if p.requires_grad and id(p) not in self._hooked:
                p.register_hook(self._unscale)
                self._hooked.add(id(p))

    def _unscale(self, g: torch.Tensor) -> torch.Tensor:
        return g * (1.0 / self.scale)

    def wrap_step(self, opt: torch.optim.Optimizer) -> None:
        orig = opt.step

        def step(*args: Any, **kwargs: Any) -> Any:
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            finite = all(bool(torch.isfinite(g).all()) for g in grads)
            if not finite:
                for g in opt.param_groups:
                    for p in g["params"]:
                        p.grad = None      # the step below then updates nothing (GradScaler skips it)
                self.scale *= BACKOFF_FACTOR
                self.good_steps = 0
                self.skipped_steps += 1
                note(self.model, TWEAK, f"fp16 overflow: skipped {self.skipped_steps} step(s); "
                     f"loss scale now {self.scale:g}")
            else:
                self.good_steps += 1
                if self.good_steps >= self.growth_interval:
                    self.scale *= GROWTH_FACTOR
                    self.good_steps = 0
            return orig(*args, **kwargs)

        step.__wrapped__ = orig  # type: ignore[attr-defined]
        opt.step = step  # type: ignore[method-assign]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by the loss scale."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scaler: _LossScaler) -> torch.Tensor:  # type: ignore[override]
        ctx.scaler = scaler
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return g * ctx.scaler.scale, None


def _default_dtype(device_type: str) -> torch.dtype:
    if device_type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


@register(TWEAK)
def apply_mixed_precision(objs: RunObjects, dtype: str | torch.dtype | None = None,
                          loss_scaling: bool | None = None, init_scale: float = INIT_SCALE,
                          growth_interval: int = GROWTH_INTERVAL) -> Applied:
    """Wrap the live model's forward in ``torch.autocast``; fp16 adds dynamic loss scaling.

    Inputs: ``objs`` (model, optimizers); ``dtype`` "bf16"/"fp16" or a torch dtype (default: bf16
    where supported, else fp16); ``loss_scaling`` (default: on for fp16 only).
    Output: Applied. Takes effect from the next forward call.
    Example: ``apply_mixed_precision(RunObjects(model, [opt]))``.
    """
    model = objs.model
    dev = model_device(model).type
    if not torch.amp.is_autocast_available(dev):
        return not_applied(TWEAK, f"torch.autocast does not support device {dev!r}")
    if torch.is_autocast_enabled(dev):
        return not_applied(TWEAK, f"your script already runs this forward under torch.autocast "
                           f"({torch.get_autocast_dtype(dev)})", already=True)
    pdt = param_dtype(model)
    if pdt in (torch.float16, torch.bfloat16):
        return not_applied(TWEAK, f"the model's parameters are already {pdt}; autocast would not "
                           "lower the precision further", already=True)
    if isinstance(dtype, str):      # "bf16" as advice.json writes it, "bfloat16", "torch.float16" ...
        try:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[normalize_dtype(dtype)]
        except ValueError as e:
            return not_applied(TWEAK, str(e))
    dtype = dtype or _default_dtype(dev)
    if dtype not in (torch.float16, torch.bfloat16):
        return not_applied(TWEAK, f"dtype must be bfloat16 or float16, not {dtype}")
    if dev == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return not_applied(TWEAK, "this GPU has no bfloat16 support; ask for dtype='float16'")
    scaling = (dtype == torch.float16) if loss_scaling is None else loss_scaling
    if scaling and not objs.optimizers:
        return not_applied(TWEAK, "fp16 needs loss scaling, which wraps the optimizer step, and "
                           "no torch.optim optimizer was found; use bfloat16")

    scaler = _LossScaler(model, init_scale, growth_interval) if scaling else None

    def out_fp32(t: torch.Tensor) -> torch.Tensor:
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        if scaler is not None and t.requires_grad and t.is_floating_point():
            t = _ScaleGrad.apply(t, scaler)
        return t

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            if scaler is not None:
                scaler.hook_params()
            with torch.autocast(dev, dtype=dtype):
                out = orig(*args, **kwargs)
            return map_tensors(out, out_fp32)
        return forward

    wrap_forward(model, make)
    changes = [f"{type(model).__name__}.forward now runs under torch.autocast('{dev}', dtype={dtype}) "
               "(from the next forward call)",
               "floating outputs are returned as float32, so your loss is computed in fp32"]
    if scaler is not None:
        for opt in objs.optimizers:
            scaler.wrap_step(opt)
        changes.append(f"dynamic loss scaling: output gradients x scale (init {init_scale:g}), parameter "
                       "gradients / scale before accumulation; "
                       + ", ".join(type(o).__name__ for o in objs.optimizers)
                       + ".step skips a step with inf/nan gradients and halves the scale")
        state(model)["loss_scaler"] = scaler
    return Applied(TWEAK, True, f"autocast {str(dtype).replace('torch.', '')} on {dev}", changes,
                   details={"dtype": str(dtype).replace("torch.", ""), "device": dev,
                            "loss_scaling": scaler is not None})
