"""--dry-run's GPU: the script sees a CUDA device, so its CUDA branches run.

Training scripts decide on the device: ``device = "cuda" if torch.cuda.is_available() else
"cpu"``, then bf16 autocast, ``fused=True``, a GradScaler, pinned memory. A dry run on a machine
without a GPU would take every CPU branch and plan a run nobody makes. While ``cuda_facade()`` is
active:

- ``torch.cuda`` answers as one GPU would (available, one device, compute capability 9.0, bf16
  supported, 80 GiB); ``synchronize``, ``set_device``, seeds, events and the memory statistics do
  nothing (they answer 0); streams run nothing but are tracked: ``torch.cuda.stream(s)`` makes ``s``
  current until the block ends, so the memory ledger can tag each allocation with the stream the GPU
  run would make it on (:func:`current_stream_key`: the caching allocator keeps a block on its stream);
- a tensor asked for on ``cuda`` (a factory's ``device=``, ``.to("cuda")``, ``.cuda()``) is a fake
  tensor on the CPU device: fake tensors need no GPU, but this build of torch has no CUDA kernels
  to describe one, so ops keep their CPU semantics (``x.is_cuda`` is False);
- ``torch.autocast("cuda", dtype)`` runs as ``torch.autocast("cpu", dtype)`` and a GradScaler
  made for ``cuda`` scales on the CPU: the dtypes the GPU run uses are the ones traced;
- where torch dispatches to a fused kernel that only CUDA has, on a condition it checks the same
  way on every device, the dry run takes that kernel too (:data:`FAST_PATHS`, device-conditional
  fast paths): ``F.rms_norm`` runs as CUDA's ``aten._fused_rms_norm``, one op forward and one
  backward that save what CUDA's do, instead of the CPU's nine-op composite with fp32 copies.

Each of these is noted as a stand-in once, at the script's line that asked.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

__all__ = ["cuda_facade", "current_stream_key", "fast_paths", "FastPath", "FAST_PATHS", "FAST_PATH_OPS",
           "FACADE_NAME", "FACADE_MEMORY_BYTES"]

FACADE_NAME = "ccprof dry-run GPU"
FACADE_MEMORY_BYTES = 80 * 2 ** 30            # what scripts that size their batch by it will read
FACADE_CAPABILITY = (9, 0)
ON_CPU = "tensors asked for on cuda are fake tensors on the CPU device"


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

    def is_capturing(self) -> bool:
        return False            # no CUDA graph is being captured (torch's optimizers ask)


class _Streams:
    """The facade's current stream: the default one, or the one a ``torch.cuda.stream(s)`` block
    (or ``set_stream``) selected."""

    def __init__(self) -> None:
        self.default = self.current = _Stream()

    @contextlib.contextmanager
    def stream(self, s: Any) -> Iterator[None]:
        if s is None:                       # torch.cuda.stream(None) selects nothing
            yield
            return
        prev, self.current = self.current, s
        try:
            yield
        finally:
            self.current = prev

    def set_stream(self, s: Any) -> None:
        if s is not None:
            self.current = s


_streams: _Streams | None = None       # while cuda_facade() is on
# the script's torch.cuda.memory._set_allocator_settings(text) calls while cuda_facade() is on, in order:
# (text, "train.py:12"); the memory ledger replays the allocator under them (ccprof.profiler.allocator)
_allocator_calls: list[tuple[str, str]] = []


def allocator_calls() -> list[tuple[str, str]]:
    """The allocator settings the script set by call in this dry run so far (empty outside one)."""
    return list(_allocator_calls)


def current_stream_key() -> int:
    """The stream a GPU run would allocate on now: 0 for the default stream, else ``id()`` of the
    stream a ``torch.cuda.stream(s)`` (or ``torch.cpu.stream(s)``) block selected. A dry run's world
    maps a DeviceMesh on cuda to the CPU (ccprof.profiler.dryrun_dist), so FSDP2 selects its
    all-gather and reduce-scatter streams through ``torch.cpu``'s device handle: both are read.
    Outside a dry run always 0 (a CPU run has one stream)."""
    state = _streams
    if state is None:
        return 0
    if state.current is not state.default:
        return id(state.current)
    cpu = torch.cpu.current_stream()
    return 0 if cpu is getattr(torch.cpu, "_default_cpu_stream", cpu) else id(cpu)


def _cuda_to_cpu(device: Any) -> Any:
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    if isinstance(device, str) and device.split(":")[0] == "cuda":
        return "cpu"
    if isinstance(device, int) and not isinstance(device, bool):
        return "cpu"                               # .to(0) / .cuda(0): a CUDA ordinal
    return device


# --- device-conditional fast paths ------------------------------------------------------------
@dataclass(frozen=True)
class FastPath:
    """An aten op torch runs as one kernel on CUDA and as its CompositeImplicitAutograd
    decomposition on the CPU (no CPU kernel in this build), where the condition that picks it is
    checked by torch itself, device-independently, before the op is called.

    While :func:`fast_paths` lasts, ``kernels`` (aten op name -> CPU kernel) are registered for the
    CPU: a backend kernel of its own makes the dispatcher run the op's autograd kernel (torch's
    generated node, from ``tools/autograd/derivatives.yaml``) instead of the decomposition, as it
    does on CUDA. The dispatch modes (the FLOP pass, the ledger) then see the op as one call and
    autograd saves what CUDA's formula saves. Under FakeTensorMode no CPU kernel runs (the fake
    mode computes the op's shapes); on real CPU tensors (a stand-in's shadow value) the kernels
    compute what the CPU composite would. ``note``: the stand-in the dry run records at the
    script's line that called it. ``source``: where the condition and the saved tensors are read.
    """
    op: str
    kernels: tuple[tuple[str, Callable[..., Any]], ...]
    note: str
    source: str


def _fused_rms_norm_cpu(input: torch.Tensor, normalized_shape: list[int], weight: torch.Tensor | None,
                        eps: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``aten._fused_rms_norm`` on the CPU: torch's own composite (``rms_norm_composite``)."""
    return torch.ops.aten._fused_rms_norm.default.decompose(input, normalized_shape, weight, eps)


def _fused_rms_norm_backward_cpu(grad_out: torch.Tensor, input: torch.Tensor, normalized_shape: list[int],
                                 rstd: torch.Tensor, weight: torch.Tensor | None,
                                 output_mask: list[bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``aten._fused_rms_norm_backward`` on the CPU: torch's registered decomposition (torch._decomp)."""
    from torch._decomp import decomposition_table
    decomp = decomposition_table[torch.ops.aten._fused_rms_norm_backward.default]
    return decomp(grad_out, input, normalized_shape, rstd, weight, output_mask)


# ``F.rms_norm`` / ``nn.RMSNorm`` -> ``torch.rms_norm`` -> ``aten::rms_norm`` (CompositeImplicitAutograd),
# ``rms_norm_symint`` in aten/src/ATen/native/layer_norm.cpp (read at pytorch/pytorch commit
# 3de78edb07f16b05fe8af347d4e2d1d495873d85; torch 2.13, git cf30153c, dispatches the same way, checked on
# CPU tensors with a dispatch mode once a CPU kernel is registered: tests/profiler/test_dryrun_cuda.py): it takes
# ``rms_norm_composite`` for a channels-last input, a complex input, or a defined weight whose dtype is not
# the input's (the warning "Mismatch dtype between input and weight ... Cannot dispatch to fused
# implementation", layer_norm.cpp:346 in torch 2.13), an MPS-only branch aside, and calls
# ``at::_fused_rms_norm`` otherwise, on every device. ``_fused_rms_norm`` has a CUDA kernel and, on the CPU,
# only ``CompositeImplicitAutograd`` (torch 2.13: ``torch._C._dispatch_dump("aten::_fused_rms_norm")``), so
# the CPU decomposes into nine ops (``_to_copy`` to fp32, pow, mean, add_, rsqrt, detach, mul, mul,
# ``_to_copy``) whose autograd saves fp32 copies. On CUDA its autograd node (derivatives.yaml, ``- name:
# _fused_rms_norm``) saves ``input``, ``weight`` and ``result1`` (rstd: fp32 for a 16-bit input, one value a
# row, shape input.shape[:-len(normalized_shape)] + 1s) and, with grad mode off in backward (no
# ``create_graph``), calls ``_fused_rms_norm_backward(grads[0], input, normalized_shape, result1, weight,
# grad_input_mask)``. Autocast is not part of rms_norm_symint's condition: the dtypes it compares are the
# ones the autocast key, dispatched before it, leaves.
FAST_PATHS: tuple[FastPath, ...] = (
    FastPath(op="_fused_rms_norm",
             kernels=(("_fused_rms_norm", _fused_rms_norm_cpu),
                      ("_fused_rms_norm_backward", _fused_rms_norm_backward_cpu)),
             note="F.rms_norm run as CUDA's fused kernel aten._fused_rms_norm (input and weight of one dtype)",
             source="aten/src/ATen/native/layer_norm.cpp rms_norm_symint; tools/autograd/derivatives.yaml "
                    "_fused_rms_norm"),
)
FAST_PATH_OPS = {getattr(torch.ops.aten, p.op).default: p for p in FAST_PATHS}     # forward op -> its path


def _forget_device_kernels() -> None:
    """The FLOP pass caches which ops have a device kernel; the fast paths change the answer."""
    from ccprof.profiler.flops import _device_kernel
    _device_kernel.cache_clear()


@contextlib.contextmanager
def fast_paths() -> Iterator[None]:
    """Register :data:`FAST_PATHS`' CPU kernels while the block lasts (``cuda_facade`` enters it);
    torch's dispatcher is as it was afterwards.

    Example:
        >>> with fast_paths():
        ...     y = torch.nn.functional.rms_norm(torch.randn(2, 8, requires_grad=True), (8,))
        >>> type(y.grad_fn).__name__
        'FusedRmsNormBackward0'
    """
    lib = torch.library.Library("aten", "IMPL")
    try:
        for path in FAST_PATHS:
            for name, kernel in path.kernels:
                lib.impl(name, kernel, "CPU")
        _forget_device_kernels()
        yield
    finally:
        lib._destroy()
        _forget_device_kernels()


@contextlib.contextmanager
def cuda_facade(log: Any, devices: int = 1) -> Iterator[None]:
    """Make the script see one CUDA GPU for the dry run (module docstring), or ``devices`` of them
    (a node's, ``--dry-run --nproc N``); ``log`` (a ``StandInLog``) gets one note per kind of
    answer, at the script's line."""
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
    global _streams
    streams = _Streams()
    cuda = torch.cuda
    replacements: dict[str, Any] = {
        "is_available": answer("is_available", True),
        "device_count": quiet(devices),
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
        "seed": quiet(),
        "seed_all": quiet(),
        "initial_seed": quiet(0),
        # torch.random.fork_rng (pipeline schedules, checkpointing) saves and restores the GPUs' generators
        "get_rng_state": lambda *a, **k: torch.get_rng_state(),
        "get_rng_state_all": lambda *a, **k: [torch.get_rng_state() for _ in range(devices)],
        "set_rng_state": quiet(),
        "set_rng_state_all": quiet(),
        "memory_allocated": quiet(0),
        "max_memory_allocated": quiet(0),
        "memory_reserved": quiet(0),
        "max_memory_reserved": quiet(0),
        "reset_peak_memory_stats": quiet(),
        "reset_max_memory_allocated": quiet(),
        "mem_get_info": quiet((FACADE_MEMORY_BYTES, FACADE_MEMORY_BYTES)),
        "Event": _Event,
        "Stream": _Stream,
        "current_stream": lambda *a, **k: streams.current,
        "default_stream": quiet(streams.default),
        "stream": streams.stream,
        "set_stream": streams.set_stream,
    }
    from ccprof.profiler.dryrun import Patches
    patches = Patches()
    for name, value in replacements.items():
        patches.set(cuda, name, value)

    def set_allocator_settings(text: Any, *args: Any, **kwargs: Any) -> None:
        """Record the script's allocator settings for the replay; the CPU's allocator is left alone."""
        line = _script_line()
        _allocator_calls.append((str(text), f"{os.path.basename(line[0])}:{line[1]}" if line else ""))
    # torch.cuda.memory._set_allocator_settings calls the first (PyTorch 2.9+) or the second by name
    for name in ("_accelerator_setAllocatorSettings", "_cuda_cudaCachingAllocator_set_allocator_settings"):
        if hasattr(torch._C, name):
            patches.set(torch._C, name, set_allocator_settings)
    # torch.accelerator, the device-generic API (Accelerate and newer scripts ask it which device to
    # use): torch.cuda's answers under its names
    accel = getattr(torch, "accelerator", None)
    if accel is not None:
        same = ("device_count", "synchronize", "empty_cache", "memory_allocated", "max_memory_allocated",
                "memory_reserved", "max_memory_reserved", "reset_peak_memory_stats", "current_stream")
        renamed = {"current_device_index": "current_device", "current_device_idx": "current_device",
                   "set_device_index": "set_device", "set_device_idx": "set_device", "get_memory_info": "mem_get_info"}
        answers = {**{n: replacements[n] for n in same}, **{n: replacements[c] for n, c in renamed.items()},
                   "is_available": answer("accelerator.is_available", True),
                   "current_accelerator": quiet(torch.device("cuda")), "set_stream": streams.set_stream}
        for name, value in answers.items():
            if hasattr(accel, name):
                patches.set(accel, name, value)

    from torch.amp import autocast_mode, grad_scaler

    def on_cpu_init(cls: type, param: str, what: str, cuda_by_default: bool = False) -> None:
        """``cls(...)`` made for cuda (its first argument, ``param``, positional or by name; or by
        default) is made for the CPU."""
        original = cls.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            if param in kwargs:
                device = kwargs[param]
            elif args:
                device = args[0]
            else:
                device = "cuda" if cuda_by_default else None
            if device == "cuda":
                note(what)
                if args and param not in kwargs:
                    args = ("cpu", *args[1:])
                else:
                    kwargs = {**kwargs, param: "cpu"}
            original(self, *args, **kwargs)
        patches.set(cls, "__init__", init)
    on_cpu_init(autocast_mode.autocast, "device_type",
                "torch.autocast('cuda') run as torch.autocast('cpu') with the same dtype")
    on_cpu_init(grad_scaler.GradScaler, "device", "GradScaler('cuda') scales on the CPU device", cuda_by_default=True)

    def moved(device: Any) -> Any:
        mapped = _cuda_to_cpu(device)
        if mapped is not device:
            note(ON_CPU)
        return mapped

    tensor_to = torch.Tensor.to

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        # torch's C++ `to` refuses a cuda device in a build without CUDA before any dispatch mode sees it
        if args and (isinstance(args[0], (str, torch.device)) or (isinstance(args[0], int)
                                                                   and not isinstance(args[0], bool))):
            args = (moved(args[0]), *args[1:])
        if "device" in kwargs:
            kwargs = {**kwargs, "device": moved(kwargs["device"])}
        return tensor_to(self, *args, **kwargs)
    patches.set(torch.Tensor, "to", to)

    def to_cuda(self: torch.Tensor, device: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        note(ON_CPU)
        return self.to("cpu")
    patches.set(torch.Tensor, "cuda", to_cuda)

    def module_to_cuda(self: torch.nn.Module, device: Any = None) -> torch.nn.Module:
        note(ON_CPU)
        return self
    patches.set(torch.nn.Module, "cuda", module_to_cuda)
    _streams = streams
    _allocator_calls.clear()
    try:
        with fast_paths():
            yield
    finally:
        _streams = None
        patches.undo()


def map_device(kwargs: dict, note: Any) -> dict:
    """A dispatched op's ``device=`` on cuda becomes the CPU, ``note()`` called then
    (``StandInMode`` calls this while the facade is on); else ``kwargs`` as they were."""
    dev = kwargs.get("device")
    mapped = _cuda_to_cpu(dev)
    if mapped is dev:
        return kwargs
    note()
    return {**kwargs, "device": mapped}
