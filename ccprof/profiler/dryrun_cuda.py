"""--dry-run's GPU: the script sees a CUDA device, so its CUDA branches run.

Training scripts decide on the device: ``device = "cuda" if torch.cuda.is_available() else
"cpu"``, then bf16 autocast, ``fused=True``, a GradScaler, pinned memory. A dry run on a machine
without a GPU would take every CPU branch and plan a run nobody makes. While ``cuda_facade()`` is
active:

- ``torch.cuda`` answers as one GPU would (available, one device, compute capability 9.0, bf16
  supported, 80 GiB); ``synchronize``, ``set_device``, seeds, streams, events and the memory
  statistics do nothing (they answer 0);
- a tensor asked for on ``cuda`` (a factory's ``device=``, ``.to("cuda")``, ``.cuda()``) is a fake
  tensor on the CPU device: fake tensors need no GPU, but this build of torch has no CUDA kernels
  to describe one, so ops keep their CPU semantics (``x.is_cuda`` is False);
- ``torch.autocast("cuda", dtype)`` runs as ``torch.autocast("cpu", dtype)`` and a GradScaler
  made for ``cuda`` scales on the CPU: the dtypes the GPU run uses are the ones traced.

Each of these is noted as a stand-in once, at the script's line that asked.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import torch

__all__ = ["cuda_facade", "FACADE_NAME", "FACADE_MEMORY_BYTES"]

FACADE_NAME = "ccprof dry-run GPU"
FACADE_MEMORY_BYTES = 80 * 2 ** 30            # what scripts that size their batch by it will read
FACADE_CAPABILITY = (9, 0)


class _Event:
    """torch.cuda.Event stand-in: records nothing, 0 ms apart."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def wait(self, *args: Any, **kwargs: Any) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, other: Any) -> float:
        return 0.0


class _Stream(_Event):
    """torch.cuda.Stream stand-in: work on it is work on the one (CPU) stream."""

    def wait_stream(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_event(self, *args: Any, **kwargs: Any) -> None:
        pass


def _cuda_to_cpu(device: Any) -> Any:
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    if isinstance(device, str) and device.split(":")[0] == "cuda":
        return "cpu"
    if isinstance(device, int) and not isinstance(device, bool):
        return "cpu"                               # .to(0) / .cuda(0): a CUDA ordinal
    return device


@contextlib.contextmanager
def cuda_facade(log: Any) -> Iterator[None]:
    """Make the script see one CUDA GPU for the dry run (module docstring); ``log`` (a
    ``StandInLog``) gets one note per kind of answer, at the script's line."""
    said: set[str] = set()

    from ccprof.profiler.dryrun_weights import _script_line

    def note(what: str, value: Any = None) -> None:
        if what not in said:
            said.add(what)
            log.note(what, value, where=_script_line())     # the script's line, past torch's own frames

    def answer(name: str, value: Any):
        def fn(*args: Any, **kwargs: Any) -> Any:
            from ccprof.profiler.dryrun import _CCPROF, _TORCH
            asker = os.path.abspath(sys._getframe(1).f_code.co_filename)
            if not asker.startswith((_CCPROF, _TORCH)):     # the script or its library asked, not torch or ccprof
                note(f"torch.cuda.{name}() answered {value!r} (a dry run's GPU)", value)
            return value
        return fn

    def quiet(value: Any = None):
        return lambda *args, **kwargs: value

    props = SimpleNamespace(name=FACADE_NAME, total_memory=FACADE_MEMORY_BYTES, major=FACADE_CAPABILITY[0],
                            minor=FACADE_CAPABILITY[1], multi_processor_count=132, is_integrated=False,
                            uuid="00000000-0000-0000-0000-000000000000", L2_cache_size=50 * 2 ** 20)
    cuda = torch.cuda
    replacements: dict[str, Any] = {
        "is_available": answer("is_available", True),
        "device_count": quiet(1),
        "current_device": quiet(0),
        "is_initialized": quiet(True),
        "init": quiet(),
        "get_device_name": quiet(FACADE_NAME),
        "get_device_capability": quiet(FACADE_CAPABILITY),
        "get_device_properties": quiet(props),
        "is_bf16_supported": quiet(True),
        "set_device": quiet(),
        "synchronize": quiet(),
        "empty_cache": quiet(),
        "manual_seed": quiet(),
        "manual_seed_all": quiet(),
        "memory_allocated": quiet(0),
        "max_memory_allocated": quiet(0),
        "memory_reserved": quiet(0),
        "max_memory_reserved": quiet(0),
        "reset_peak_memory_stats": quiet(),
        "reset_max_memory_allocated": quiet(),
        "mem_get_info": quiet((FACADE_MEMORY_BYTES, FACADE_MEMORY_BYTES)),
        "Event": _Event,
        "Stream": _Stream,
        "current_stream": quiet(_Stream()),
        "default_stream": quiet(_Stream()),
        "stream": quiet(contextlib.nullcontext()),
    }
    undo: list[tuple[Any, str, Any]] = []
    for name, value in replacements.items():
        undo.append((cuda, name, getattr(cuda, name, None)))
        setattr(cuda, name, value)

    from torch.amp import autocast_mode, grad_scaler
    ac_init = autocast_mode.autocast.__init__

    def autocast_init(self: Any, device_type: str, *args: Any, **kwargs: Any) -> None:
        if device_type == "cuda":
            note("torch.autocast('cuda') run as torch.autocast('cpu') with the same dtype")
            device_type = "cpu"
        ac_init(self, device_type, *args, **kwargs)
    undo.append((autocast_mode.autocast, "__init__", ac_init))
    autocast_mode.autocast.__init__ = autocast_init

    gs_init = grad_scaler.GradScaler.__init__

    def scaler_init(self: Any, device: str = "cuda", *args: Any, **kwargs: Any) -> None:
        if device == "cuda":
            note("GradScaler('cuda') scales on the CPU device")
            device = "cpu"
        gs_init(self, device, *args, **kwargs)
    undo.append((grad_scaler.GradScaler, "__init__", gs_init))
    grad_scaler.GradScaler.__init__ = scaler_init

    tensor_to = torch.Tensor.to

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        # torch's C++ `to` refuses a cuda device in a build without CUDA before any dispatch mode sees it
        if args and (isinstance(args[0], (str, torch.device)) or (isinstance(args[0], int)
                                                                   and not isinstance(args[0], bool))):
            mapped = _cuda_to_cpu(args[0])
            if mapped is not args[0]:
                note("tensors asked for on cuda are fake tensors on the CPU device")
                args = (mapped, *args[1:])
        if "device" in kwargs:
            mapped = _cuda_to_cpu(kwargs["device"])
            if mapped is not kwargs["device"]:
                note("tensors asked for on cuda are fake tensors on the CPU device")
                kwargs = {**kwargs, "device": mapped}
        return tensor_to(self, *args, **kwargs)
    undo.append((torch.Tensor, "to", tensor_to))
    torch.Tensor.to = to
    tensor_cuda = torch.Tensor.cuda

    def to_cuda(self: torch.Tensor, device: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        note("tensors asked for on cuda are fake tensors on the CPU device")
        return self.to("cpu")
    undo.append((torch.Tensor, "cuda", tensor_cuda))
    torch.Tensor.cuda = to_cuda
    module_cuda = torch.nn.Module.cuda

    def module_to_cuda(self: torch.nn.Module, device: Any = None) -> torch.nn.Module:
        note("tensors asked for on cuda are fake tensors on the CPU device")
        return self
    undo.append((torch.nn.Module, "cuda", module_cuda))
    torch.nn.Module.cuda = module_to_cuda
    try:
        yield
    finally:
        for owner, name, value in reversed(undo):
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def map_devices(func: Any, args: tuple, kwargs: dict, note: Any) -> tuple[tuple, dict]:
    """A dispatched op's ``device=`` on cuda becomes the CPU (``StandInMode`` calls this while the
    facade is on); the args are returned unchanged otherwise."""
    dev = kwargs.get("device")
    if dev is not None:
        mapped = _cuda_to_cpu(dev)
        if mapped is not dev:
            note()
            kwargs = {**kwargs, "device": mapped}
    return args, kwargs
