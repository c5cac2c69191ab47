"""grad_accumulation: split each batch into k micro-batches inside the live model's forward.

Works when the forward itself returns the loss (Hugging Face models called with
``labels``, nanoGPT's ``logits, loss = model(x, y)``): micro-batches 1..k-1 run forward and
``torch.autograd.grad`` there and then, so only one micro-batch's activations are alive at
a time; their gradients wait in side buffers and are added by parameter hooks when the
user's own ``loss.backward()`` reaches each parameter (so a ``zero_grad()`` between forward
and backward cannot erase them). The returned loss has the full batch's value and the last
micro-batch's graph; tensors with the batch dim are concatenated back (earlier
micro-batches detached). Micro-batch losses are weighted by their share of samples, which
equals the full-batch mean for per-sample-mean losses (token-mean losses with padding differ
slightly). A call that passes ``num_items_in_batch`` (the Hugging Face Trainer does) gets a
loss already divided by the whole batch's token count, so its micro-batch losses add up
unweighted. When the loss is computed outside ``model(...)`` there is no loss to backpropagate
inside the model: the tweak says so, and the codemod rewrites the loop instead.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from ccprof.applier.runtime._base import (
    Applied,
    RunObjects,
    find_loss,
    hf_model,
    not_applied,
    note,
    register,
    replace_loss,
    state,
    wrap_forward,
)
from ccprof.artefacts.tweaks import GradAccumulationOptions

__all__ = ["apply_grad_accumulation", "split_batch"]

TWEAK = "grad_accumulation"
LOSS_ARGS = ("labels", "label", "targets", "target", "y")
CODEMOD = ("`ccprof apply -t grad_accumulation` rewrites your loop to call backward on "
           "loss / k for each of k micro-batches and step the optimizer every k")


def _batch_len(args: tuple, kwargs: dict) -> int | None:
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, torch.Tensor) and v.ndim >= 1:
            return v.shape[0]
    return None


def split_batch(args: tuple, kwargs: dict, n: int, bounds: list[tuple[int, int]]) -> list[tuple[tuple, dict]]:
    """Slice every tensor whose first dim is ``n`` into the ``bounds`` micro-batches."""
    def cut(v: Any, s: int, e: int) -> Any:
        if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == n:
            return v[s:e]
        if isinstance(v, dict):
            return type(v)((k, cut(x, s, e)) for k, x in v.items())
        if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
            return type(v)(cut(x, s, e) for x in v)
        return v
    return [(tuple(cut(a, s, e) for a in args), {k: cut(v, s, e) for k, v in kwargs.items()})
            for s, e in bounds]


def _merge(outs: list[Any], sizes: list[int]) -> Any:
    """Rebuild one output from micro-batch outputs: cat tensors on the batch dim, else the last."""
    last = outs[-1]
    if isinstance(last, torch.Tensor):
        if last.ndim >= 1 and all(isinstance(o, torch.Tensor) and o.ndim >= 1 and o.shape[0] == s
                                  for o, s in zip(outs, sizes)):
            return torch.cat(outs, dim=0)
        return last
    if isinstance(last, dict):
        merged = {k: _merge([o[k] for o in outs], sizes) for k in last.keys()}
        return type(last)(**merged) if any(c.__name__ == "ModelOutput" for c in type(last).__mro__) \
            else type(last)(merged)
    if isinstance(last, (list, tuple)):
        items = [_merge([o[i] for o in outs], sizes) for i in range(len(last))]
        return type(last)(*items) if hasattr(last, "_fields") else type(last)(items)
    return last


def _detach(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, dict):
        d = {k: _detach(v) for k, v in out.items()}
        return type(out)(**d) if any(c.__name__ == "ModelOutput" for c in type(out).__mro__) else type(out)(d)
    if isinstance(out, (list, tuple)):
        items = [_detach(v) for v in out]
        return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)
    return out


class _Accumulator:
    """Side buffers for early micro-batch gradients, added by per-parameter hooks."""

    def __init__(self) -> None:
        self.pending: dict[int, torch.Tensor] = {}
        self._hooked: set[int] = set()

    def add(self, params: list[nn.Parameter], grads: tuple[torch.Tensor | None, ...]) -> None:
        for p, g in zip(params, grads):
            if g is None:
                continue
            if id(p) not in self._hooked:
                p.register_hook(self._hook_for(id(p)))
                self._hooked.add(id(p))
            self.pending[id(p)] = g if id(p) not in self.pending else self.pending[id(p)] + g

    def _hook_for(self, key: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(g: torch.Tensor) -> torch.Tensor:
            extra = self.pending.pop(key, None)
            return g if extra is None else g + extra.to(g.dtype)
        return hook


def _loss_in_call(model: nn.Module, args: tuple, kwargs: dict) -> bool | None:
    """Whether this call passes labels/targets (None when it cannot be told)."""
    try:
        bound = inspect.signature(model.forward).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    return any(bound.arguments.get(k) is not None for k in LOSS_ARGS)


@register(TWEAK)
def apply_grad_accumulation(objs: RunObjects, micro_batches: int = GradAccumulationOptions().value("steps")) -> Applied:
    """Run each training forward of ``objs.model`` as ``micro_batches`` sequential micro-batches.

    Output: Applied; not applied when the call in progress shows the loss is computed outside
    the model (then the codemod is the way). Takes effect from the next forward call; what
    happens later (a call without a loss) is in ``runtime_notes``.
    Example: ``apply_grad_accumulation(RunObjects(model, [opt], example_kwargs=batch), micro_batches=4)``.
    """
    model = objs.model
    if micro_batches < 2:
        return not_applied(TWEAK, f"micro_batches must be at least 2, not {micro_batches}")
    if objs.example_args is not None or objs.example_kwargs is not None:
        args, kwargs = tuple(objs.example_args or ()), dict(objs.example_kwargs or {})
        if _loss_in_call(model, args, kwargs) is False:
            return not_applied(TWEAK, f"your script computes the loss outside {type(model).__name__}(...) "
                               f"(no labels/targets passed), so ccprof cannot backpropagate micro-batches "
                               f"inside the model; {CODEMOD}")
        n = _batch_len(args, kwargs)
        if n is not None and n < micro_batches:
            return not_applied(TWEAK, f"the batch has {n} samples, fewer than {micro_batches} micro-batches")
    elif hf_model(model) is None and not any(p in inspect.signature(model.forward).parameters for p in LOSS_ARGS):
        return not_applied(TWEAK, f"{type(model).__name__}.forward takes no labels/targets, so the loss is "
                           f"computed outside it; {CODEMOD}")
    acc = _Accumulator()
    st = {"disabled": None, "calls": 0}

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            n = _batch_len(args, kwargs)
            if st["disabled"] or not (model.training and torch.is_grad_enabled()) or n is None or n < 2:
                return orig(*args, **kwargs)
            k = min(micro_batches, n)
            edges = [round(i * n / k) for i in range(k + 1)]
            bounds = list(zip(edges[:-1], edges[1:]))
            sizes = [e - s for s, e in bounds]
            params = [p for p in model.parameters() if p.requires_grad]
            outs, losses = [], []
            for i, (a, kw) in enumerate(split_batch(args, kwargs, n, bounds)):
                out = orig(*a, **kw)
                loss = find_loss(out)
                if loss is None:
                    st["disabled"] = f"{type(model).__name__}(...) returned no loss; batches run whole"
                    note(model, TWEAK, st["disabled"])
                    del out
                    return orig(*args, **kwargs)
                # HF losses given num_items_in_batch are sums over the whole batch's count: they add
                w = 1.0 if kwargs.get("num_items_in_batch") is not None else sizes[i] / n
                if i < k - 1:
                    grads = torch.autograd.grad(loss * w, params, allow_unused=True)
                    acc.add(params, grads)
                    outs.append(_detach(out))
                else:
                    outs.append(out)
                losses.append((w, loss))
            w_last, last = losses[-1]
            total = w_last * last + sum(w * l.detach() for w, l in losses[:-1])
            st["calls"] += 1
            return replace_loss(_merge(outs, sizes), total)
        return forward

    wrap_forward(model, make)
    state(model)[TWEAK] = st
    return Applied(TWEAK, True, f"{micro_batches} micro-batches per forward",
                   [f"{type(model).__name__}.forward splits each training batch into {micro_batches} "
                    "micro-batches (from the next forward call)",
                    "micro-batches 1..k-1 backpropagate inside the forward; their gradients are added when "
                    "your loss.backward() reaches each parameter",
                    "the returned loss is the sample-weighted mean of the micro-batch losses"],
                   details={"micro_batches": micro_batches})
