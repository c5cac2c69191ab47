"""pruning: mask weights of the live model with torch.nn.utils.prune.

Methods: ``l1_unstructured`` (smallest |w| anywhere), ``ln_structured`` (whole output
channels/rows by L2 norm) and ``2:4`` (two of every four consecutive input weights, the
pattern sparse tensor cores run at twice the math rate on Ampere+, Mishra et al. 2021).
torch.nn.utils.prune keeps the original tensor (``weight_orig``, the same Parameter object the
user's optimizer holds) and a ``weight_mask`` buffer; the forward uses their product, so
the pruned weights receive zero gradient and stay pruned. Masks alone give no dense
speed-up (unstructured zeros still run dense kernels: PyTorch's pruning tutorial); the win is what a later
export can drop.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from ccprof.applier.runtime._base import Applied, RunObjects, linear_targets, not_applied, register
from ccprof.artefacts.tweaks import PruningOptions

__all__ = ["apply_pruning", "METHODS", "DEFAULT_AMOUNT"]

TWEAK = "pruning"
METHODS = ("l1_unstructured", "ln_structured", "2:4")
# An assumption, not a published figure: a cautious one-shot amount. Lottery-ticket work
# (Frankle & Carbin, ICLR 2019) finds >90% prunable, but only with retraining.
_D = PruningOptions()                  # the catalog's one default of each option
DEFAULT_AMOUNT = _D.value("amount")


def mask_2_4(w: torch.Tensor) -> torch.Tensor:
    """Keep the two largest |w| of every four consecutive elements along the last dim."""
    groups = w.detach().abs().reshape(-1, 4)                   # (rows * in/4, 4)
    keep = groups.topk(2, dim=1).indices
    mask = torch.zeros_like(groups).scatter_(1, keep, 1.0)
    return mask.reshape(w.shape)


@register(TWEAK)
def apply_pruning(objs: RunObjects, method: str = _D.value("method"), amount: float = _D.value("amount"),
                  targets: list[str] | None = None) -> Applied:
    """Prune the weights of ``targets`` (default: the Linear layers of the repeated blocks).

    Inputs: ``method`` one of METHODS; ``amount`` fraction (ignored by 2:4, which is 50%).
    Output: Applied with the zero fraction per method in ``details``.
    Example: ``apply_pruning(RunObjects(model), method="ln_structured", amount=0.25)``.
    """
    model = objs.model
    if method not in METHODS:
        return not_applied(TWEAK, f"unknown pruning method {method!r}; one of {', '.join(METHODS)}")
    if prune.is_pruned(model):
        return not_applied(TWEAK, f"{type(model).__name__} already carries torch.nn.utils.prune masks",
                           already=True)
    targets = targets if targets is not None else linear_targets(model)
    mods = []
    for n in targets:
        m = model.get_submodule(n)
        if isinstance(m._parameters.get("weight"), nn.Parameter):
            mods.append((n, m))
    if not mods:
        return not_applied(TWEAK, f"{type(model).__name__} has no Linear layers to prune")
    if method == "2:4":
        bad = [n for n, m in mods if m.weight.shape[-1] % 4]
        if bad:
            return not_applied(TWEAK, f"2:4 sparsity needs input sizes divisible by 4; not {', '.join(bad[:3])}")
    total = zeros = 0
    for _, m in mods:
        if method == "l1_unstructured":
            prune.l1_unstructured(m, "weight", amount=amount)
        elif method == "ln_structured":
            prune.ln_structured(m, "weight", amount=amount, n=2, dim=0)
        else:
            prune.custom_from_mask(m, "weight", mask_2_4(m.weight))
        total += m.weight_mask.numel()
        zeros += int((m.weight_mask == 0).sum())
    frac = zeros / total
    return Applied(TWEAK, True, f"{method}: {frac:.0%} of {total:,} weights in {len(mods)} layers masked",
                   [f"torch.nn.utils.prune {method} on {len(mods)} layers "
                    f"({', '.join(n for n, _ in mods[:4])}{', ...' if len(mods) > 4 else ''})",
                    f"{zeros:,} of {total:,} weights are zero in the forward ({frac:.1%})",
                    "state_dict keys of those layers become weight_orig + weight_mask",
                    "masks only: no dense speed-up until the zeros are exported as sparse or removed"],
                   details={"method": method, "zero_frac": frac, "layers": [n for n, _ in mods]})
