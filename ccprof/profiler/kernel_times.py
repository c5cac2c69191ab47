"""Device time of every aten op over one step on a CUDA GPU: what the kernels really took there.

On a GPU the profiler spends one extra step under ``torch.profiler`` (CUPTI kernel timestamps,
no shapes or stacks) after the FLOP and memory steps, and keeps, per aten op, the device time
of the kernels it launched (``self_device_time_total``: a kernel counts for the innermost op
that launched it, so ``aten::linear`` gets nothing and ``aten::addmm`` its GEMM). The cost
model compares these with what it predicts for the same ops on this GPU and recalibrates itself
by kernel class before projecting onto other GPUs (``ccprof.hardware.projection``).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

__all__ = ["KernelPass", "device_time_by_op"]


def _self_device_us(avg: Any) -> float:
    """An event average's own device microseconds, whatever this torch calls it."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        v = getattr(avg, name, None)
        if v is not None:
            return float(v)
    return 0.0


def device_time_by_op(averages: Iterable[Any], *, use_cpu: bool = False) -> dict[str, float]:
    """``{"aten.mm": seconds, ...}`` from ``prof.key_averages()``: aten ops only, device time
    (``use_cpu``: their own CPU time instead, for exercising the code on a CPU-only host)."""
    out: dict[str, float] = {}
    for avg in averages:
        key = str(getattr(avg, "key", ""))
        if not key.startswith("aten::"):
            continue
        us = float(getattr(avg, "self_cpu_time_total", 0.0) or 0.0) if use_cpu else _self_device_us(avg)
        if us > 0:
            name = "aten." + key[len("aten::"):]
            out[name] = out.get(name, 0.0) + us * 1e-6
    return out


class KernelPass:
    """One step under torch.profiler with CUDA activity; ``stop()`` returns device s by aten op.

    ``start()``/``set_phase()``/``stop()`` match the FLOP and memory passes, so the Session
    drives it the same way. On a host without CUDA it records CPU times instead (tests).
    """

    def __init__(self, cuda: bool = True) -> None:
        self.cuda = cuda and torch.cuda.is_available()
        self._prof: Any = None

    def start(self) -> None:
        acts = [torch.profiler.ProfilerActivity.CPU]
        if self.cuda:
            acts.append(torch.profiler.ProfilerActivity.CUDA)
            torch.cuda.synchronize()
        self._prof = torch.profiler.profile(activities=acts, record_shapes=False, with_stack=False)
        self._prof.__enter__()

    def set_phase(self, phase: str) -> None:     # the device time is kept per op, not per phase
        pass

    def stop(self) -> dict[str, float]:
        if self._prof is None:
            raise RuntimeError("KernelPass.stop() called before start()")
        if self.cuda:
            torch.cuda.synchronize()
        prof, self._prof = self._prof, None
        prof.__exit__(None, None, None)
        return device_time_by_op(prof.key_averages(), use_cpu=not self.cuda)
