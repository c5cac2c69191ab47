"""compile: ``model.forward = torch.compile(model.forward)`` on the live model.

Compilation is lazy, so when the harness hands over the forward call's arguments the
compiled forward is tried on them once (RNG state and buffers restored afterwards, so the
run is not perturbed); a failure restores the eager forward and says why. Without a trial,
a Dynamo/Inductor error at the first real call falls back to eager and is recorded in
``runtime_notes``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ccprof.applier.runtime._base import (
    Applied,
    RunObjects,
    model_device,
    not_applied,
    note,
    register,
    state,
    wrap_forward,
)
from ccprof.artefacts.tweaks import CompileOptions

__all__ = ["apply_compile"]

TWEAK = "compile"
_D = CompileOptions()                           # the catalog's one default of each option


def _compile_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import TorchDynamoException  # here: torch._dynamo is heavy; only compile needs it
        errs.append(TorchDynamoException)
    except ImportError:
        pass
    try:
        from torch._inductor.exc import InductorError  # type: ignore[attr-defined]
        errs.append(InductorError)
    except ImportError:
        pass
    return tuple(errs) or (RuntimeError,)


def _already(model: nn.Module) -> str | None:
    if type(model).__name__ == "OptimizedModule":
        return "the model is already a torch.compile'd module"
    if getattr(model, "_compiled_call_impl", None) is not None:
        return "model.compile() was already called"
    fwd = model.forward
    while fwd is not None:
        if hasattr(fwd, "_torchdynamo_orig_callable") or hasattr(fwd, "_torchdynamo_inline"):
            return "model.forward is already compiled"
        fwd = getattr(fwd, "__wrapped__", None)
    return None


def _trial(model: nn.Module, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """Run ``fn`` once, leaving RNG state and buffers as they were."""
    dev = model_device(model)
    bufs = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        out = fn(*args, **kwargs)
    del out
    with torch.no_grad():
        for b, saved in bufs:
            b.copy_(saved)


@register(TWEAK)
def apply_compile(objs: RunObjects, backend: str = _D.value("backend"), mode: str | None = None,
                  fullgraph: bool = _D.value("fullgraph"), dynamic: bool | None = None, trial: bool = True) -> Applied:
    """Compile the live model's forward with ``torch.compile``.

    Inputs: ``backend``/``mode``/``fullgraph``/``dynamic`` as in torch.compile; ``trial``:
    compile now on ``objs.example_args/kwargs`` when given. Output: Applied (not applied,
    with the error, when compilation fails). Takes effect from the next forward call.
    Example: ``apply_compile(RunObjects(model, example_args=(x,)), backend="aot_eager")``.
    """
    model = objs.model
    try:
        import torch._dynamo as dynamo  # here: torch._dynamo is heavy; only compile needs it
        supported = dynamo.is_dynamo_supported()
    except Exception as e:
        return not_applied(TWEAK, f"torch.compile is unavailable here: {e}")
    if not supported:
        return not_applied(TWEAK, "torch.compile (Dynamo) is not supported on this Python/platform")
    why = _already(model)
    if why:
        return not_applied(TWEAK, why, already=True)

    errors = _compile_errors()
    eager = model.forward
    compiled = torch.compile(eager, backend=backend, mode=mode, fullgraph=fullgraph, dynamic=dynamic)
    tried = False
    if trial and (objs.example_args is not None or objs.example_kwargs is not None):
        try:
            _trial(model, compiled, tuple(objs.example_args or ()), dict(objs.example_kwargs or {}))
            tried = True
        except Exception as e:  # any failure here means: do not compile this model
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return not_applied(TWEAK, f"torch.compile(backend={backend!r}) failed on "
                               f"{type(model).__name__}.forward: {type(e).__name__}: {first}",
                               error=type(e).__name__)

    st = {"fallback": False}

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            if st["fallback"]:
                return orig(*args, **kwargs)
            try:
                return compiled(*args, **kwargs)
            except errors as e:
                st["fallback"] = True
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                note(model, TWEAK, f"torch.compile failed at run time, fell back to eager: "
                     f"{type(e).__name__}: {first}")
                return orig(*args, **kwargs)
        return forward

    wrap_forward(model, make)
    state(model)[TWEAK] = st
    opts = f"backend={backend!r}" + (f", mode={mode!r}" if mode else "") + (", fullgraph=True" if fullgraph else "")
    changes = [f"{type(model).__name__}.forward = torch.compile({type(model).__name__}.forward, {opts}) "
               "(from the next forward call)"]
    changes.append("compiled once on this step's inputs (RNG and buffers restored)" if tried
                   else "compiles at the next forward; a compile error falls back to eager")
    return Applied(TWEAK, True, f"torch.compile({opts})", changes, details={"trial": tried, "backend": backend})
