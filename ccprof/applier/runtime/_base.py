"""Machinery shared by the runtime appliers: the registry, the marker, and small helpers.

Private module: the public surface is ``ccprof.applier.runtime``.
"""
from __future__ import annotations

import functools
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ccprof.artefacts.tweaks import TWEAKS

MARK_ATTR = "_ccprof_applied"      # {tweak: Applied} on the root module: a second apply is a no-op
STATE_ATTR = "_ccprof_state"       # {tweak: object} live state (scaler, teacher, notes)


@dataclass
class RunObjects:
    """The live objects of a running training script, as the harness sees them.

    ``model`` is the trained root module; ``optimizers`` and ``dataloaders`` are the user's own
    objects (changed in place, never replaced). ``example_args``/``example_kwargs`` are the
    arguments of the forward call in progress when the harness has them (``compile`` uses
    them for a trial run). ``schedulers`` lets ``batch_size(scale_lr=True)`` rescale base lrs.
    """
    model: nn.Module
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    dataloaders: list[Any] = field(default_factory=list)
    example_args: tuple | None = None
    example_kwargs: dict[str, Any] | None = None
    schedulers: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Applied:
    """What one ``apply_<id>`` did to the live objects.

    ``applied`` is False when nothing changed; ``reason`` then says why (in the user's
    terms) and ``already_applied`` tells a repeat or a script that already does it apart
    from a tweak that does not fit this run. ``changes`` lists each change made.
    """
    tweak: str
    applied: bool
    reason: str = ""
    changes: list[str] = field(default_factory=list)
    already_applied: bool = False
    details: dict[str, Any] = field(default_factory=dict)


REGISTRY: dict[str, Callable[..., Applied]] = {}


def marks(model: nn.Module) -> dict[str, Applied]:
    """The marker dict on ``model`` (created empty on first use)."""
    return model.__dict__.setdefault(MARK_ATTR, {})


def state(model: nn.Module) -> dict[str, Any]:
    """The live-state dict on ``model`` (created empty on first use)."""
    return model.__dict__.setdefault(STATE_ATTR, {})


def note(model: nn.Module, tweak: str, text: str) -> None:
    """Record something that happened after apply time (read back with ``runtime_notes``)."""
    notes = state(model).setdefault("_notes", {}).setdefault(tweak, [])
    if text not in notes:
        notes.append(text)


def register(tweak: str) -> Callable[[Callable[..., Applied]], Callable[..., Applied]]:
    """Register ``apply_<tweak>``; refuses duplicates; wraps it with the marker check."""
    def deco(fn: Callable[..., Applied]) -> Callable[..., Applied]:
        if tweak in REGISTRY:
            raise ValueError(f"runtime applier for {tweak!r} registered twice")
        if tweak not in TWEAKS or not TWEAKS[tweak].runtime:
            raise ValueError(f"runtime applier for {tweak!r}: the catalog (ccprof/artefacts/tweaks.py) lists none")

        @functools.wraps(fn)
        def apply(objs: RunObjects | nn.Module, **options: Any) -> Applied:
            if isinstance(objs, nn.Module):
                objs = RunObjects(model=objs)
            done = marks(objs.model)
            if tweak in done:
                return Applied(tweak, False, f"already applied by ccprof to this {type(objs.model).__name__} "
                               f"(marker {MARK_ATTR}); nothing changed", [], already_applied=True,
                               details={"first": done[tweak].changes})
            result = fn(objs, **options)
            if result.applied:
                done[tweak] = result
            return result

        REGISTRY[tweak] = apply
        return apply
    return deco


def not_applied(tweak: str, reason: str, already: bool = False, **details: Any) -> Applied:
    return Applied(tweak, False, reason, [], already_applied=already, details=details)


# --- model helpers ---------------------------------------------------------------------

def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter (or buffer); cpu for an empty model."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def param_dtype(model: nn.Module) -> torch.dtype:
    """The dtype holding most parameter elements."""
    counts: Counter[torch.dtype] = Counter()
    for p in model.parameters():
        counts[p.dtype] += p.numel()
    return counts.most_common(1)[0][0] if counts else torch.float32


def trainable_elems(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def hf_model(model: nn.Module) -> nn.Module | None:
    """The Hugging Face PreTrainedModel: the root itself or its first such submodule."""
    if "transformers" not in sys.modules:   # not imported by the script: no HF model (and no slow import)
        return None
    try:
        from transformers import PreTrainedModel  # here: transformers loads only on this path
    except Exception:  # transformers broken: no HF path
        return None
    for m in model.modules():
        if isinstance(m, PreTrainedModel):
            return m
    return None


def find_repeated_blocks(model: nn.Module) -> tuple[str, nn.Module, list[str]] | None:
    """The container of identical blocks holding the most parameters.

    Returns (container name, container, child names) for a ModuleList/Sequential with at
    least two children of one class and one parameter count, e.g. ("model.layers", ...).
    """
    best: tuple[int, str, nn.Module, list[str]] | None = None
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.ModuleList, nn.Sequential)):
            continue
        groups: dict[tuple[type, int], list[str]] = {}
        for cname, child in mod.named_children():
            n = sum(p.numel() for p in child.parameters())
            if n == 0:
                continue
            groups.setdefault((type(child), n), []).append(cname)
        for (_, n), names in groups.items():
            if len(names) < 2:
                continue
            total = n * len(names)
            if best is None or total > best[0]:
                best = (total, name, mod, names)
    return None if best is None else (best[1], best[2], best[3])


def main_optimizer(model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> torch.optim.Optimizer | None:
    """The optimizer that updates most of ``model``'s parameters (None when none does)."""
    own = {id(p) for p in model.parameters()}
    best, best_n = None, 0
    for opt in optimizers:
        n = sum(p.numel() for g in opt.param_groups for p in g["params"] if id(p) in own)
        if n > best_n:
            best, best_n = opt, n
    return best


def freeze(params: list[nn.Parameter], optimizers: list[torch.optim.Optimizer]) -> int:
    """Stop training ``params``: requires_grad off, grads dropped, optimizer state dropped.

    Grads are set to None so an optimizer cannot keep moving them (momentum, weight decay),
    and their state is freed so the memory saving is real. Returns elements frozen.
    """
    n = 0
    for p in params:
        if p.requires_grad:
            n += p.numel()
        p.requires_grad_(False)
        p.grad = None
        for opt in optimizers:
            opt.state.pop(p, None)
    return n


def drop_from_optimizers(params: list[torch.Tensor], optimizers: list[torch.optim.Optimizer]) -> int:
    """Remove ``params`` from every param group (in place) and drop their state; returns count."""
    gone = {id(p) for p in params}
    n = 0
    for opt in optimizers:
        for g in opt.param_groups:
            keep = [p for p in g["params"] if id(p) not in gone]
            n += len(g["params"]) - len(keep)
            g["params"] = keep
        for p in params:
            opt.state.pop(p, None)
    return n


def template_group(opt: torch.optim.Optimizer, model: nn.Module) -> dict[str, Any]:
    """The param group of ``opt`` that holds most of ``model``'s parameter elements."""
    own = {id(p) for p in model.parameters()}
    return max(opt.param_groups, key=lambda g: sum(p.numel() for p in g["params"] if id(p) in own))


def add_param_group(opt: torch.optim.Optimizer, params: list[nn.Parameter], model: nn.Module,
                    lr: float | None = None) -> dict[str, Any]:
    """Hand ``params`` to the user's optimizer as a new group copying the hyperparameters of
    the group that holds most of the model (current lr, not the constructor's)."""
    template = template_group(opt, model)
    group = {k: v for k, v in template.items() if k != "params"}
    if lr is not None:
        group["lr"] = lr
        group["initial_lr"] = lr
    group["params"] = list(params)
    opt.add_param_group(group)
    return group


# Per-param-group lists kept by torch.optim.lr_scheduler classes (LambdaLR's lr_lambdas,
# CyclicLR's max_lrs, OneCycleLR/CyclicLR momentums, ReduceLROnPlateau's min_lrs).
SCHEDULER_GROUP_LISTS = ("base_lrs", "_last_lr", "lr_lambdas", "max_lrs", "min_lrs",
                         "base_momentums", "max_momentums")


def extend_schedulers(schedulers: list[Any], opt: torch.optim.Optimizer, template: dict[str, Any]) -> int:
    """Give every LR scheduler of ``opt`` an entry for its newest param group, copied from the
    ``template`` group's entry (the new group's ``initial_lr`` as its base lr).

    torch's schedulers zip their per-group lists with ``optimizer.param_groups`` strictly, so a
    group added after they were built stops the run at the next ``scheduler.step()``
    (``ValueError: zip() argument 2 is shorter than argument 1``). Children of SequentialLR /
    ChainedScheduler and accelerate's wrapper are followed. Returns schedulers extended.
    """
    n = len(opt.param_groups)
    t = next(i for i, g in enumerate(opt.param_groups) if g is template)
    new = opt.param_groups[-1]
    seen: set[int] = set()
    todo, extended = list(schedulers), 0
    while todo:
        s = todo.pop()
        if s is None or id(s) in seen:
            continue
        seen.add(id(s))
        todo += list(getattr(s, "_schedulers", None) or []) + [getattr(s, "scheduler", None)]
        o = getattr(s, "optimizer", None)
        if o is not opt and getattr(o, "optimizer", None) is not opt:
            continue
        grew = False
        for name in SCHEDULER_GROUP_LISTS:
            values = s.__dict__.get(name)
            if isinstance(values, list) and len(values) == n - 1:
                values.append(new.get("initial_lr", new["lr"]) if name == "base_lrs"
                              else new["lr"] if name == "_last_lr" else values[t])
                grew = True
        extended += grew
    return extended


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor in a nested output (tuple, list, dict, ModelOutput)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return type(obj)(**{k: map_tensors(v, fn) for k, v in obj.items()}) \
            if _is_model_output(obj) else type(obj)((k, map_tensors(v, fn)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(map_tensors(v, fn) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def _is_model_output(obj: Any) -> bool:
    return any(c.__name__ == "ModelOutput" for c in type(obj).__mro__)


def find_loss(out: Any) -> torch.Tensor | None:
    """The scalar loss a forward returned: a 0-dim float tensor, ``out["loss"]``/``out.loss``,
    or the only 0-dim float tensor of a tuple (nanoGPT's ``logits, loss``)."""
    def scalar(t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t.ndim == 0 and t.is_floating_point()
    if scalar(out):
        return out
    if isinstance(out, Mapping):
        v = out.get("loss")
        return v if scalar(v) else None
    if isinstance(out, (tuple, list)):
        cands = [v for v in out if scalar(v)]
        return cands[0] if len(cands) == 1 else None
    return None


def _replace_in_output(out: Any, old: torch.Tensor | None, key: str, new: torch.Tensor) -> Any:
    """``out`` with the tensor ``old`` (found under ``key`` or among its items) swapped for ``new``."""
    if old is None:
        return out
    if out is old:
        return new
    if isinstance(out, Mapping):
        if _is_model_output(out):
            out[key] = new               # ModelOutput keeps attribute and key in step
            return out
        d = type(out)(out)
        d[key] = new
        return d
    items = [new if v is old else v for v in out]
    return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)


def replace_loss(out: Any, new_loss: torch.Tensor) -> Any:
    """``out`` with its loss (as found by ``find_loss``) replaced by ``new_loss``."""
    return _replace_in_output(out, find_loss(out), "loss", new_loss)


def find_logits(out: Any) -> torch.Tensor | None:
    """The logits a forward returned: ``out.logits``, a plain tensor, or the first float
    tensor with two or more dims in a tuple."""
    def ok(t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t.ndim >= 2 and t.is_floating_point()
    if ok(out):
        return out
    if isinstance(out, Mapping):
        v = out.get("logits")
        return v if ok(v) else None
    if isinstance(out, (tuple, list)):
        for v in out:
            if ok(v):
                return v
    return None


def replace_logits(out: Any, new: torch.Tensor) -> Any:
    """``out`` with its logits (as found by ``find_logits``) replaced by ``new``."""
    return _replace_in_output(out, find_logits(out), "logits", new)


def wrap_forward(module: nn.Module, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``module.forward`` on the instance by ``make(current_forward)``.

    ``Module._call_impl`` reads ``self.forward`` before running forward pre-hooks, so a
    wrapper installed from a pre-hook of this very module takes effect from the next call.
    """
    orig = module.forward
    new = make(orig)
    new.__wrapped__ = orig  # type: ignore[attr-defined]
    module.forward = new  # instance attribute: the user's variable keeps pointing at `module`


def linear_targets(model: nn.Module) -> list[str]:
    """Names of the nn.Linear layers worth adapting/pruning: those inside the repeated
    blocks, else every Linear except the last one registered (the output head)."""
    rep = find_repeated_blocks(model)
    linears = [n for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and ".lora_" not in f".{n}"]   # never an adapter
    if rep is not None:
        prefix = rep[0] + "." if rep[0] else ""
        inside = [n for n in linears if any(n.startswith(f"{prefix}{c}.") for c in rep[2])]
        if inside:
            return inside
    head = {"lm_head", "head", "classifier", "score", "output", "fc_out"}
    rest = [n for n in linears if n.rsplit(".", 1)[-1] not in head]
    return rest[:-1] if len(rest) == len(linears) and len(rest) > 1 else rest


def get_submodule_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(parent module, child attribute name) for a dotted submodule name."""
    if "." in name:
        parent_name, child = name.rsplit(".", 1)
        return model.get_submodule(parent_name), child
    return model, name


def strip_ccprof(module: nn.Module) -> None:
    """Remove ccprof's instance-level forwards and markers from a (copied) module tree."""
    for m in module.modules():
        for attr in ("forward", MARK_ATTR, STATE_ATTR):
            if attr in m.__dict__ and (attr != "forward" or hasattr(m.__dict__[attr], "__wrapped__")):
                del m.__dict__[attr]
