"""What the profiling host's CPU costs per launched op: the host side of a GPU step.

On a GPU the host queues kernels ahead of the device; a step cannot be shorter than the host's
own work: PyTorch's dispatch of every op, the Python of every module call, the loop's glue.
:func:`measure_host` times the first two on this machine (tiny CPU tensors, so nearly all of it
is dispatch, not arithmetic); the cost model adds a CUDA launch per kernel on top
(``ccprof.hardware.step.CUDA_LAUNCH_S``), which a CPU-only host cannot measure.
"""
from __future__ import annotations

import time

import torch

from ccprof.artefacts.profile import HostInfo

__all__ = ["measure_host"]

_REPEATS = 2000


class _Add(torch.nn.Module):
    def forward(self, a, b):
        return torch.add(a, b)


def _best_per_call(fn, repeats: int) -> float:
    """Best of three rounds of ``repeats`` calls: seconds per call (load on the machine only slows it)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def measure_host(module_calls_per_step: int = 0, repeats: int = _REPEATS) -> HostInfo:
    """Time one small aten op and one module call around it on this host (~20 ms in all).

    Output: a HostInfo with ``dispatch_s`` (``torch.add`` of two 4-element tensors, grad off)
    and ``module_call_s`` (the extra of calling it through ``nn.Module.__call__``, hooks and
    all), the best of three rounds each.

    >>> h = measure_host(); 0 < h.dispatch_s < 1e-3
    True
    """
    a, b = torch.ones(4), torch.ones(4)
    mod = _Add()
    with torch.no_grad():
        for _ in range(200):
            torch.add(a, b)
            mod(a, b)
        op_s = _best_per_call(lambda: torch.add(a, b), repeats)
        mod_s = _best_per_call(lambda: mod(a, b), repeats)
    return HostInfo(dispatch_s=op_s, module_call_s=max(0.0, mod_s - op_s),
                    module_calls_per_step=int(module_calls_per_step),
                    method=f"measured on the profiling host: torch.add on 4 elements, best of 3 x {repeats} calls")
