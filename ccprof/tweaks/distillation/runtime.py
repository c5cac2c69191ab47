"""distillation: turn the live model into a shallower student trained on its own soft labels.

The teacher is a frozen copy of the model as it is now; the user's model object becomes the
student by dropping blocks from its repeated-block container (every other one, as
DistilBERT initialised its student; Sanh et al. 2019), and the dropped parameters leave the
user's optimizer. Each training forward also runs the teacher (no grad) and the student is
trained on alpha * (the user's loss) + (1 - alpha) * T^2 * KL(teacher_T || student_T)
(Hinton et al. 2015), without touching the user's loss code:

- when the forward returns a loss (HF with labels), the returned loss carries that mixed
  gradient while keeping the value of the user's own loss (so logs and the quality guard
  compare like with like);
- otherwise the returned logits pass through an identity whose backward mixes the user's
  gradient with the KD gradient T * (softmax(s/T) - softmax(t/T)) / positions.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from ccprof.applier.runtime._base import (
    Applied,
    RunObjects,
    drop_from_optimizers,
    find_logits,
    find_loss,
    find_repeated_blocks,
    hf_model,
    not_applied,
    note,
    register,
    replace_logits,
    replace_loss,
    state,
    strip_ccprof,
    wrap_forward,
)
from ccprof.artefacts.tweaks import DistillationOptions

__all__ = ["apply_distillation", "kd_loss"]

TWEAK = "distillation"
_D = DistillationOptions()   # the catalog's one default of each option (alpha 0.5, temperature 2: see there)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over positions."""
    v = student.shape[-1]
    s = F.log_softmax(student.float().reshape(-1, v) / temperature, dim=-1)
    t = F.log_softmax(teacher.float().reshape(-1, v) / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2


class _KDGrad(torch.autograd.Function):
    """Identity on the student logits; backward = alpha * g + (1 - alpha) * d(KD)/d(logits)."""

    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, t: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(s, t)
        ctx.alpha, ctx.temperature = alpha, temperature
        return s.view_as(s)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        s, t = ctx.saved_tensors
        T = ctx.temperature
        positions = s.numel() // s.shape[-1]
        grad_kd = T * (torch.softmax(s.float() / T, -1) - torch.softmax(t.float() / T, -1)) / positions
        return ctx.alpha * g + (1 - ctx.alpha) * grad_kd.to(g.dtype), None, None, None


def _renumber_hf(hf: nn.Module, blocks: list[nn.Module], kept: list[int]) -> list[str]:
    """Keep a HF model consistent with fewer layers: layer_idx, num_hidden_layers, layer_types."""
    changes = []
    for new_i, b in enumerate(blocks):
        for m in b.modules():
            if isinstance(getattr(m, "layer_idx", None), int):
                m.layer_idx = new_i
    cfg = getattr(hf, "config", None)
    if cfg is not None and hasattr(cfg, "num_hidden_layers"):
        old = cfg.num_hidden_layers
        cfg.num_hidden_layers = len(blocks)
        changes.append(f"config.num_hidden_layers {old} -> {len(blocks)}")
        types = getattr(cfg, "layer_types", None)
        if isinstance(types, list) and len(types) == old:
            cfg.layer_types = [types[i] for i in kept]
    return changes


@register(TWEAK)
def apply_distillation(objs: RunObjects, keep_every: int = _D.value("keep_every"), keep: list[int] | None = None,
                       alpha: float = _D.value("alpha"), temperature: float = _D.value("temperature")) -> Applied:
    """Make ``objs.model`` a student with fewer blocks, distilled from a frozen copy of itself.

    Inputs: ``keep_every`` (keep blocks 0, k, 2k, ...) or ``keep`` (block indices);
    ``alpha`` weight of the user's loss; ``temperature``. Output: Applied with block counts
    and parameter counts in ``details``. Blocks are dropped at once; the teacher joins from
    the next forward call. The teacher costs one more copy of the weights (no grads/state).
    Example: ``apply_distillation(RunObjects(model, [opt]), keep_every=2)``.
    """
    model = objs.model
    if not 0.0 <= alpha < 1.0:
        return not_applied(TWEAK, f"alpha must be in [0, 1) (1 would ignore the teacher), not {alpha}")
    found = find_repeated_blocks(model)
    if found is None:
        return not_applied(TWEAK, f"{type(model).__name__} has no ModuleList/Sequential of identical blocks "
                           "to drop layers from; build a smaller student yourself")
    cname, cont, names = found
    n = len(names)
    kept = sorted(set(keep)) if keep is not None else list(range(0, n, max(1, keep_every)))
    if not kept or len(kept) >= n or kept[-1] >= n or kept[0] < 0:
        return not_applied(TWEAK, f"keeping {kept} of {n} blocks in {cname or 'the model'} would not make "
                           "a smaller student")
    if len(names) != len(cont):
        return not_applied(TWEAK, f"{cname} mixes other modules with its blocks; ccprof only drops from "
                           "a plain list of blocks")

    params_before = sum(p.numel() for p in model.parameters())
    teacher = copy.deepcopy(model)
    strip_ccprof(teacher)
    teacher.eval()
    teacher.requires_grad_(False)

    block_idx = [int(c) for c in names]
    drop = [block_idx[i] for i in range(n) if i not in kept]
    dropped_params = [p for i in drop for p in cont[i].parameters()]
    for i in sorted(drop, reverse=True):
        del cont[i]
    removed = drop_from_optimizers(dropped_params, objs.optimizers)
    changes = [f"student: kept blocks {kept} of {n} in {cname or type(model).__name__} "
               f"({len(drop)} dropped; {removed} tensors left the optimizer)"]
    hf = hf_model(model)
    if hf is not None:
        changes += _renumber_hf(hf, [cont[i] for i in range(len(cont))], kept)
    params_after = sum(p.numel() for p in model.parameters())

    st = {"teacher": teacher, "kd_calls": 0}

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            if not (model.training and torch.is_grad_enabled()):
                return out
            with torch.no_grad():
                t_out = teacher(*args, **kwargs)
            s_logits, t_logits = find_logits(out), find_logits(t_out)
            if s_logits is None or t_logits is None or s_logits.shape != t_logits.shape:
                note(model, TWEAK, "the forward returned no logits matching the teacher's; trained without KD")
                return out
            st["kd_calls"] += 1
            loss = find_loss(out)
            if loss is not None:
                kd = kd_loss(s_logits, t_logits, temperature)
                mixed = alpha * loss + (1 - alpha) * kd
                return replace_loss(out, mixed + ((1 - alpha) * (loss - kd)).detach())  # value = loss
            return replace_logits(out, _KDGrad.apply(s_logits, t_logits.detach(), alpha, temperature))
        return forward

    wrap_forward(model, make)
    state(model)[TWEAK] = st
    changes += [f"teacher: a frozen copy of the original {n}-block model runs under no_grad in each training "
                "forward (from the next call)",
                f"loss = {alpha:g} x your loss + {1 - alpha:g} x T^2 KL(teacher || student), T={temperature:g} "
                "(your loss's value is reported unchanged)",
                f"student parameters {params_before:,} -> {params_after:,}"]
    return Applied(TWEAK, True, f"student with {len(kept)} of {n} blocks", changes,
                   details={"blocks_before": n, "blocks_after": len(kept), "params_before": params_before,
                            "params_after": params_after})
