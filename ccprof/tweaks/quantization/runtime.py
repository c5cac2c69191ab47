"""quantization: store frozen Linear weights in int8 (or packed int4) on the live model.

QLoRA style (Dettmers et al., NeurIPS 2023): only weights that are not trained are
quantized; the forward dequantizes on the fly, gradients still flow to the inputs (and so
to adapters and earlier layers), and backward dequantizes again instead of keeping a
full-precision copy for autograd. Schemes are plain symmetric ones, not bitsandbytes':
int8 with one scale per output row (absmax, as in LLM.int8's vector-wise quantization,
Dettmers et al. 2022, without its outlier split), int4 with one scale per group of 64 inputs
(QLoRA's block size; QLoRA's NF4 code book is not used). Bytes per weight: 1 (int8) or 0.5
(int4) plus scales, against 4 for fp32 (PyTorch docs: "4x smaller" for int8).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ccprof.applier.runtime._base import (
    Applied,
    RunObjects,
    drop_from_optimizers,
    freeze,
    get_submodule_parent,
    linear_targets,
    not_applied,
    register,
)
from ccprof.artefacts.tweaks import QuantizationOptions

__all__ = ["apply_quantization", "QuantLinear", "quantize_weight", "dequantize_weight"]

TWEAK = "quantization"
_D = QuantizationOptions()              # the catalog's one default of each option
GROUP_SIZE = _D.value("group_size")     # QLoRA's quantization block size


def quantize_weight(w: torch.Tensor, bits: int, group_size: int = GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, scale): int8 per-row (q int8 (out, in), scale (out, 1)) or int4 per-group packed two
    per byte (q uint8 (out, in/2), scale (out, in/group))."""
    w = w.detach().float()
    if bits == 8:
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        q = torch.round(w / scale).clamp_(-127, 127).to(torch.int8)
        return q, scale
    out_f, in_f = w.shape
    g = w.reshape(out_f, in_f // group_size, group_size)                  # (out, groups, gs)
    scale = g.abs().amax(dim=2, keepdim=True).clamp_min(1e-12) / 7.0
    q = (torch.round(g / scale).clamp_(-8, 7) + 8).to(torch.uint8).reshape(out_f, in_f)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)                                # (out, in/2)
    return packed, scale.squeeze(2)


def dequantize_weight(q: torch.Tensor, scale: torch.Tensor, bits: int, group_size: int = GROUP_SIZE,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (out, in) weight that ``quantize_weight`` encoded, in ``dtype``."""
    if bits == 8:
        return (q.to(dtype) * scale.to(dtype))
    out_f = q.shape[0]
    lo = (q & 0x0F).to(torch.int16) - 8
    hi = (q >> 4).to(torch.int16) - 8
    w = torch.stack((lo, hi), dim=2).reshape(out_f, -1).to(dtype)         # (out, in)
    return (w.reshape(out_f, -1, group_size) * scale.to(dtype).unsqueeze(2)).reshape(out_f, -1)


class _QLinearFn(torch.autograd.Function):
    """y = x @ deq(W).T + b, keeping only the quantized W for backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                bits: int, group_size: int) -> torch.Tensor:  # type: ignore[override]
        w = dequantize_weight(q, scale, bits, group_size, x.dtype)
        ctx.save_for_backward(q, scale)
        ctx.bits, ctx.group_size = bits, group_size
        ctx.has_bias = bias is not None
        return nn.functional.linear(x, w, None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        q, scale = ctx.saved_tensors
        w = dequantize_weight(q, scale, ctx.bits, ctx.group_size, g.dtype)
        gx = g @ w if ctx.needs_input_grad[0] else None
        gb = g.reshape(-1, g.shape[-1]).sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return gx, None, None, gb, None, None


class QuantLinear(nn.Module):
    """A frozen Linear whose weight lives as int8/int4 codes plus scales (buffers)."""

    def __init__(self, linear: nn.Linear, bits: int = 8, group_size: int = GROUP_SIZE) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bits, self.group_size = bits, group_size
        q, scale = quantize_weight(linear.weight, bits, group_size)
        self.register_buffer("qweight", q.to(linear.weight.device))
        self.register_buffer("scale", scale.to(linear.weight.device))
        self.weight_dtype = linear.weight.dtype
        b = linear.bias
        if b is not None and b.requires_grad:
            self.bias = b                      # same Parameter: the optimizer keeps training it
        elif b is not None:
            self.register_buffer("bias", b.detach())
        else:
            self.bias = None

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (a new tensor; for code that reads ``.weight``)."""
        return dequantize_weight(self.qweight, self.scale, self.bits, self.group_size, self.weight_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _QLinearFn.apply(x, self.qweight, self.scale, self.bias, self.bits, self.group_size)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"


def _state_bytes(model: nn.Module) -> int:
    seen, n = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            n += t.numel() * t.element_size()
    return n


@register(TWEAK)
def apply_quantization(objs: RunObjects, bits: int = _D.value("bits"), group_size: int = _D.value("group_size"),
                       targets: list[str] | None = None, freeze_targets: bool = _D.value("freeze_targets")) -> Applied:
    """Replace frozen ``nn.Linear`` layers of the live model by ``QuantLinear`` (int8 or int4).

    Inputs: ``bits`` 8 or 4; ``targets`` Linear names (default: every frozen Linear, e.g. the
    base layers under LoRA); ``freeze_targets`` freezes the block Linears first (their
    weights then stop training: only sensible with adapters or for a frozen backbone).
    Output: Applied with parameter+buffer bytes before/after in ``details``.
    Example: ``apply_quantization(RunObjects(model, [opt]), bits=4)`` after ``apply_lora``.
    """
    model = objs.model
    if bits not in (8, 4):
        return not_applied(TWEAK, f"bits must be 8 or 4, not {bits}")
    if any(isinstance(m, QuantLinear) for m in model.modules()) or any(
            type(m).__name__ in ("Linear8bitLt", "Linear4bit") for m in model.modules()):
        return not_applied(TWEAK, f"{type(model).__name__} already has quantized Linear layers", already=True)
    if targets is None:
        if freeze_targets:
            targets = linear_targets(model)
        else:
            targets = [n for n, m in model.named_modules()
                       if type(m) is nn.Linear and not m.weight.requires_grad]
    mods = [(n, model.get_submodule(n)) for n in targets]
    mods = [(n, m) for n, m in mods if type(m) is nn.Linear]
    if not mods:
        return not_applied(TWEAK, "no frozen nn.Linear weights to quantize: this run trains every "
                           "Linear; apply lora (or freeze a backbone) first, or pass freeze_targets=True")
    if bits == 4:
        bad = [n for n, m in mods if m.in_features % group_size]
        if bad:
            return not_applied(TWEAK, f"int4 needs in_features divisible by {group_size}; not {', '.join(bad[:3])}")
    trained = [n for n, m in mods if m.weight.requires_grad]
    if trained and not freeze_targets:
        return not_applied(TWEAK, f"{', '.join(trained[:3])} are trained; quantizing trained weights needs "
                           "quantization-aware training (pass freeze_targets=True to freeze them)")
    before = _state_bytes(model)
    if trained:
        freeze([m.weight for _, m in mods], objs.optimizers)
    old = []
    for n, m in mods:
        parent, child = get_submodule_parent(model, n)
        setattr(parent, child, QuantLinear(m, bits, group_size))
        old.append(m.weight)
        if m.bias is not None and not m.bias.requires_grad:
            old.append(m.bias)
    dropped = drop_from_optimizers(old, objs.optimizers)
    after = _state_bytes(model)
    changes = [f"{len(mods)} frozen nn.Linear -> QuantLinear int{bits} "
               f"({', '.join(n for n, _ in mods[:4])}{', ...' if len(mods) > 4 else ''})",
               f"parameter + buffer bytes {before:,} -> {after:,}"]
    if trained:
        changes.append(f"froze {len(trained)} Linear weights first (freeze_targets=True)")
    if dropped:
        changes.append(f"removed {dropped} replaced tensors from the optimizer's param groups")
    return Applied(TWEAK, True, f"int{bits} weights in {len(mods)} layers; {before:,} -> {after:,} bytes",
                   changes, details={"bytes_before": before, "bytes_after": after,
                                     "layers": [n for n, _ in mods], "bits": bits})
