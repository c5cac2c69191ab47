"""checkpointing: recompute each repeated block in backward instead of keeping its activations.

Hugging Face models use their own ``gradient_checkpointing_enable`` (non-reentrant); any
other model gets each block of its largest container of identical blocks (``ModuleList`` or
``Sequential``) wrapped in ``torch.utils.checkpoint.checkpoint(use_reentrant=False)`` on the
instance. Non-reentrant checkpointing restores the RNG state on recomputation, so dropout
masks and gradients are the same as without it (Chen et al. 2016, arXiv 1604.06174: one
extra forward per step, O(sqrt n) activation memory with sqrt(n) segments; per block here).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ccprof.applier.runtime._base import (
    Applied,
    RunObjects,
    find_repeated_blocks,
    hf_model,
    not_applied,
    register,
    wrap_forward,
)

__all__ = ["apply_checkpointing"]

TWEAK = "checkpointing"


def _checkpointed(block: nn.Module) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            if block.training and torch.is_grad_enabled():
                return checkpoint(orig, *args, use_reentrant=False, **kwargs)
            return orig(*args, **kwargs)
        return forward
    return make


@register(TWEAK)
def apply_checkpointing(objs: RunObjects, container: str | None = None) -> Applied:
    """Enable activation checkpointing on the live model's repeated blocks.

    Inputs: ``objs.model``; ``container`` names the block container ("model.layers") when
    the largest-container guess is not the one wanted. Output: Applied, with
    ``details["blocks"]`` = blocks checkpointed. Takes effect on the forward in progress.
    Example: ``apply_checkpointing(RunObjects(model))``.
    """
    model = objs.model
    hf = hf_model(model)
    if hf is not None and container is None and getattr(hf, "supports_gradient_checkpointing", False):
        # transformers 5 renamed gradient_* to activation_* (the old names warn until v6)
        is_on = getattr(type(hf), "is_activation_checkpointing", None)
        is_on = hf.is_activation_checkpointing if is_on is not None else getattr(hf, "is_gradient_checkpointing", False)
        if is_on:
            return not_applied(TWEAK, f"gradient checkpointing is already on for {type(hf).__name__} "
                               "(gradient/activation_checkpointing_enable was called)", already=True)
        if hasattr(hf, "activation_checkpointing_enable"):
            hf.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            how = "activation_checkpointing_enable"
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            how = "gradient_checkpointing_enable"
        n = sum(1 for m in hf.modules() if getattr(m, "gradient_checkpointing", False) is True
                and not hasattr(m, "supports_gradient_checkpointing"))
        changes = [f"{type(hf).__name__}.{how}(use_reentrant=False): "
                   f"{n} layers recompute their activations in backward"]
        if getattr(getattr(hf, "config", None), "use_cache", False):
            changes.append("the KV cache is off while training with checkpointing (transformers does this)")
        return Applied(TWEAK, True, f"Hugging Face gradient checkpointing on {n} layers", changes,
                       details={"blocks": n, "method": how})

    if container is not None:
        try:
            cont = model.get_submodule(container)
        except AttributeError:
            return not_applied(TWEAK, f"no submodule {container!r} in {type(model).__name__}")
        names = [n for n, _ in cont.named_children()]
        if not names:
            return not_applied(TWEAK, f"{container} ({type(cont).__name__}) has no child blocks to checkpoint")
        found = (container, cont, names)
    else:
        found = find_repeated_blocks(model)
    if found is None:
        return not_applied(TWEAK, f"{type(model).__name__} has no ModuleList/Sequential of identical "
                           "blocks to checkpoint; wrap your repeated layers' calls in "
                           "torch.utils.checkpoint.checkpoint yourself")
    cname, cont, names = found
    blocks = [cont.get_submodule(n) for n in names]
    for b in blocks:
        wrap_forward(b, _checkpointed(b))
    cls = type(blocks[0]).__name__
    where = cname or type(model).__name__
    return Applied(TWEAK, True, f"checkpointed {len(blocks)} x {cls} in {where}",
                   [f"{where}[{names[0]}..{names[-1]}]: each {cls}.forward runs under "
                    "torch.utils.checkpoint.checkpoint(use_reentrant=False) while training"],
                   details={"blocks": len(blocks), "container": cname, "class": cls,
                            "method": "torch.utils.checkpoint"})
