"""GPU utilization, memory and power sampled by NVML in a background thread.

``nvidia-ml-py`` (imported as ``pynvml``) is the maintained binding. Sampling runs only
over the timed steps, at ``INTERVAL_S``; energy per step comes from the driver's energy
counter when it has one (Volta and newer), else from integrating sampled power.
"""
from __future__ import annotations

import threading
from typing import Any

from ccprof.artefacts.profile import GpuInfo, GpuSample
from ccprof.profiler.clock import wall_s

__all__ = ["NvmlSampler", "INTERVAL_S", "open_device"]

INTERVAL_S = 0.1   # 10 Hz: NVML's utilization counter itself averages over 1/6 s to 1 s


def open_device(torch_index: int = 0) -> tuple[Any, Any] | tuple[None, str]:
    """(pynvml, handle) for the torch CUDA device, or (None, reason)."""
    try:
        import torch  # here: torch loads only on this path

        if not torch.cuda.is_available():
            return None, "no CUDA device (torch.cuda.is_available() is False)"
        import pynvml  # here: pynvml (NVML) loads only on this path
    except ImportError as exc:
        return None, f"pynvml not importable: {exc}"
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return None, f"NVML init failed: {exc}"
    try:
        uuid = str(torch.cuda.get_device_properties(torch_index).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(("GPU-" + uuid) if not uuid.startswith("GPU-") else uuid)
    except Exception:
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch_index)
        except Exception as exc:
            return None, f"NVML has no handle for CUDA device {torch_index}: {exc}"
    return pynvml, handle


class NvmlSampler:
    """``start()`` / ``stop(steps) -> GpuInfo``; ``reason`` says why there is none."""

    def __init__(self, torch_index: int = 0, interval_s: float = INTERVAL_S):
        self.interval_s = interval_s
        self.nvml, handle_or_reason = open_device(torch_index)
        self.handle = handle_or_reason if self.nvml else None
        self.reason = None if self.nvml else str(handle_or_reason)
        self.samples: list[GpuSample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._energy0_mj: int | None = None

    def _energy_mj(self) -> int | None:
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception:
            return None

    def _sample(self) -> GpuSample:
        n, h = self.nvml, self.handle
        util = mem = power = None
        try:
            util = float(n.nvmlDeviceGetUtilizationRates(h).gpu)
        except Exception:
            pass
        try:
            mem = int(n.nvmlDeviceGetMemoryInfo(h).used)
        except Exception:
            pass
        try:
            power = n.nvmlDeviceGetPowerUsage(h) / 1000.0
        except Exception:
            pass
        return GpuSample(t_s=round(wall_s() - self._t0, 4), sm_util_pct=util,
                         mem_used_bytes=mem, power_w=power)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._sample())
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self.nvml is None or self._thread is not None:
            return
        self._t0 = wall_s()
        self._energy0_mj = self._energy_mj()
        self._thread = threading.Thread(target=self._loop, name="ccprof-nvml", daemon=True)
        self._thread.start()

    def stop(self, steps: int) -> GpuInfo | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join(timeout=2)
        elapsed = wall_s() - self._t0
        self.samples.append(self._sample())
        energy_j = None
        e1 = self._energy_mj()
        if self._energy0_mj is not None and e1 is not None and e1 > self._energy0_mj:
            energy_j = (e1 - self._energy0_mj) / 1000.0
        powers = [s.power_w for s in self.samples if s.power_w is not None]
        if energy_j is None and powers:
            energy_j = sum(powers) / len(powers) * elapsed
        utils = sorted(s.sm_util_pct for s in self.samples if s.sm_util_pct is not None)
        p95 = utils[min(len(utils) - 1, int(0.95 * len(utils)))] if utils else None
        return GpuInfo(
            samples=self.samples, interval_s=self.interval_s,
            mean_sm_util_pct=sum(utils) / len(utils) if utils else None, p95_sm_util_pct=p95,
            mean_power_w=sum(powers) / len(powers) if powers else None,
            energy_j_per_step=(energy_j / steps) if (energy_j is not None and steps) else None,
            source="nvml",
        )
