"""The FLOP cross-check: fvcore's jit-traced count of one forward, against ``Flops.forward``."""
from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten

__all__ = ["fvcore_forward_flops"]


def _tensors(tree) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(tree)
    return [x for x in leaves if isinstance(x, torch.Tensor)]


# Ops fvcore counts by default that FlopCounterMode does not (norms, pooling, resampling):
# switched off so the cross-check compares like with like (matmuls, convolutions, einsum).
_FVCORE_OFF = (
    "aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
    "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d",
    "aten::grid_sampler",
)


def fvcore_forward_flops(model: torch.nn.Module, args: tuple, kwargs: dict | None = None
                         ) -> tuple[int | None, str | None]:
    """fvcore's jit-traced FLOP count of one forward: the cross-check for ``Flops.forward``.

    fvcore counts one multiply-add as one "flop"; the result is doubled to match
    FlopCounterMode (2 FLOPs per multiply-add). Norms, pooling and resampling, which
    FlopCounterMode does not count, are switched off. The model runs under ``no_grad``
    with the RNG state restored afterwards, so the user's random stream is untouched.

    Args:
        model: the module to trace; args / kwargs: one forward's inputs (kwargs are bound
            as constants of the trace).

    Returns:
        ``(flops, None)``, or ``(None, "why")`` when fvcore is missing or cannot trace the
        model (Hugging Face models typically fail on their cache objects).

    Example:
        >>> fvcore_forward_flops(torch.nn.Linear(4, 3), (torch.randn(2, 4),), {})
        (48, None)
    """
    try:
        from fvcore.nn import FlopCountAnalysis  # here: fvcore loads only on this path
        from fvcore.nn.flop_count import (
            _DEFAULT_SUPPORTED_OPS as _FVCORE_DEFAULT_OPS,  # here: fvcore loads only on this path
        )
    except ImportError as exc:
        return None, f"fvcore is not installed ({exc}); pip install 'ccprof[crosscheck]'"
    kwargs = dict(kwargs or {})
    target: torch.nn.Module = model if not kwargs else _BoundKwargs(model, kwargs)
    devices = [d.index if d.index is not None else torch.cuda.current_device()
               for d in {t.device for t in _tensors((args, kwargs)) if t.device.type == "cuda"}]
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            analysis = FlopCountAnalysis(target, tuple(args))
            handles = {k: v for k, v in _FVCORE_DEFAULT_OPS.items() if k not in _FVCORE_OFF}
            analysis.clear_op_handles().set_op_handle(**handles)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            total_macs = analysis.total()
    except Exception as exc:  # noqa: BLE001 - any tracing failure is the answer we report
        msg = " ".join(str(exc).split())[:300]
        return None, (f"fvcore could not trace {type(model).__name__} with torch.jit "
                      f"({type(exc).__name__}: {msg})")
    finally:
        model.train(was_training)
    return 2 * int(total_macs), None


class _BoundKwargs(torch.nn.Module):
    """Calls ``model(*args, **kwargs)`` with fixed kwargs: jit tracing takes positionals only."""

    def __init__(self, model: torch.nn.Module, kwargs: dict) -> None:
        super().__init__()
        self.model = model
        self._kwargs = kwargs

    def forward(self, *args):
        return self.model(*args, **self._kwargs)
