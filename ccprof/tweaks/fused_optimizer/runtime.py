"""fused_optimizer: switch the user's optimizers to torch's fused (else foreach) update.

The switch is made on the live optimizer's param groups. Which instance attributes a fused
optimizer needs is learned by building a throwaway optimizer of the same class with
``fused=True`` on the same device: if torch refuses, the tweak says why; otherwise the
attributes its constructor set are copied over, and step counters already created by a
non-fused step are moved to the parameter's device, where the fused kernels want them.
"""
from __future__ import annotations

import inspect

import torch

from ccprof.applier.runtime._base import Applied, RunObjects, not_applied, register

__all__ = ["apply_fused_optimizer"]

TWEAK = "fused_optimizer"
_FUSED_ATTRS = ("_step_supports_amp_scaling", "_need_device_dtype_check_for_fused")


def _probe(opt: torch.optim.Optimizer, device: torch.device, dtype: torch.dtype) -> torch.optim.Optimizer:
    kw = {k: v for k, v in opt.defaults.items() if k in inspect.signature(type(opt)).parameters}
    kw.update(fused=True, foreach=False)
    p = torch.zeros(1, device=device, dtype=dtype, requires_grad=True)
    return type(opt)([p], **kw)


def _one(opt: torch.optim.Optimizer) -> tuple[str, str | None]:
    """Switch one optimizer; returns (what changed, why not)."""
    name = type(opt).__name__
    params = [p for g in opt.param_groups for p in g["params"]]
    if not params:
        return "", f"{name} has no parameters"
    groups_fused = [g.get("fused") for g in opt.param_groups]
    if all(groups_fused):
        return "", f"{name} is already fused"
    if "fused" not in opt.defaults:
        if opt.defaults.get("foreach") is None and "foreach" in opt.defaults and params[0].is_cuda:
            return "", f"{name} has no fused kernel; it already uses foreach by default on CUDA"
        if "foreach" in opt.defaults and not all(g.get("foreach") for g in opt.param_groups):
            for g in opt.param_groups:
                g["foreach"] = True
            opt.defaults["foreach"] = True
            return f"{name}: foreach=True (no fused kernel for {name} in torch {torch.__version__})", None
        return "", f"{name} has neither a fused nor a foreach implementation"
    if any(g.get("differentiable") for g in opt.param_groups):
        return "", f"{name} is differentiable=True, which the fused kernels do not support"
    devices = {(p.device, p.dtype) for p in params}
    try:
        for dev, dt in devices:
            probe = _probe(opt, dev, dt)
    except (RuntimeError, ValueError, TypeError) as e:
        return "", f"torch cannot fuse {name} here: {e}"
    for attr in _FUSED_ATTRS:          # what the constructor sets only when fused=True
        if attr in vars(probe):
            setattr(opt, attr, getattr(probe, attr))
    for g in opt.param_groups:
        g["fused"] = True
        if "foreach" in g:
            g["foreach"] = False
    opt.defaults["fused"] = True
    if "foreach" in opt.defaults:
        opt.defaults["foreach"] = False
    moved = 0
    for p, st in opt.state.items():
        step = st.get("step") if isinstance(st, dict) else None
        if isinstance(step, torch.Tensor) and step.device != p.device:
            st["step"] = step.to(device=p.device, dtype=torch.float32)
            moved += 1
    extra = f" ({moved} step counters moved to the parameters' device)" if moved else ""
    return f"{name}: fused=True on {len(opt.param_groups)} param group(s){extra}", None


@register(TWEAK)
def apply_fused_optimizer(objs: RunObjects) -> Applied:
    """Make each of ``objs.optimizers`` use torch's fused update (foreach where no fused one).

    Output: Applied; ``details["skipped"]`` says why an optimizer was left alone.
    Example: ``apply_fused_optimizer(RunObjects(model, [torch.optim.AdamW(model.parameters())]))``.
    """
    if not objs.optimizers:
        return not_applied(TWEAK, "no torch.optim optimizer in this run")
    changes, skipped = [], []
    for opt in objs.optimizers:
        done, why = _one(opt)
        if done:
            changes.append(done)
        if why:
            skipped.append(why)
    if not changes:
        already = all("already" in s for s in skipped)
        return not_applied(TWEAK, "; ".join(skipped), already=already, skipped=skipped)
    return Applied(TWEAK, True, "; ".join(changes), changes + [f"left alone: {s}" for s in skipped],
                   details={"skipped": skipped})
