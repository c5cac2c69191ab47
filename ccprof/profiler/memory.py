"""The memory ledger of one training step: parameters, gradients, optimizer state,
activations and the peak, on CPU and GPU alike.

Every number counts storages, not tensors: a view, a transpose or a tied weight shares its
base's ``untyped_storage()`` and is counted once. Storage Python objects are preserved
while the storage lives, so a ``weakref.finalize`` on one fires exactly when its memory
is freed; the ledger keys storages by their C pointer (``_cdata``).

- parameters, gradients, optimizer state, buffers: steady-state sizes, read from the live
  objects (gradients and optimizer state are read at every phase change and at stop, and
  the largest reading is kept, and every gradient is also read as autograd accumulates it,
  so ``zero_grad(set_to_none=True)`` mid-step hides nothing).
- activations: storages handed to autograd's ``saved_tensors_hooks`` pack hook during the
  step that are neither parameters, buffers nor the inputs handed to a root module's
  forward (those count in ``other_bytes``), attributed to every module (of the roots)
  running when they were saved, so a module's figure includes its children's. A parameter
  the step gathered (FSDP's unsharded weights, a view of an ``nn.Parameter`` whose storage was
  not there at start) is no activation either: it is in the peak and in ``other_bytes``.
- peak: the highest live total during the step. Live = what was alive at start
  (parameters, gradients, optimizer state, buffers) + every storage an aten op created or
  touched since, until its finalizer fires. A ``TorchDispatchMode`` sees every op, in the
  autograd engine's threads too. A storage resized in place (``untyped_storage().resize_``,
  which no op dispatches: FSDP2 frees each block's gathered parameters so after its forward
  and backward, keeping the tensors) counts at its new size.
  A kernel's private workspace (a convolution backward's buffers, say) is no tensor and
  never passes through the dispatcher, so it is not in the peak; on CUDA the allocator's
  figures include it.
- on CUDA also the caching allocator's own figures (peak stats reset at start):
  ``cuda_max_allocated_bytes`` (peak allocated) and ``cuda_reserved_bytes`` (peak reserved).

Only storages on the ledger's device count (a GPU ledger ignores the CPU copy of a batch
and AdamW's CPU ``step`` scalars).
"""
from __future__ import annotations

import math
import weakref
from collections import defaultdict
from typing import Any, Iterable

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ccprof.artefacts.profile import AllocatorSettings, Memory, OptimizerInfo, OptimizerSection
from ccprof.profiler.dryrun_cuda import allocator_calls, current_stream_key
from ccprof.profiler.flops import module_names, normalize_phase

__all__ = ["MemoryLedger", "optimizer_section", "unique_storage_bytes"]

METHOD = ("storage ledger: dispatch-mode allocations with weakref finalizers on frees, "
          "saved_tensors_hooks for activations, each storage counted once")


def _local(t: Any) -> Any:
    """A sharded tensor's shard on this rank (a DTensor's local tensor: what FSDP2 and tensor
    parallelism leave on the GPU); any other tensor itself. A DTensor's own storage is the
    whole (global) tensor's size."""
    local = getattr(t, "_local_tensor", None)
    return local if isinstance(local, torch.Tensor) else t


def _is_parameter(t: Any) -> bool:
    """``t`` is a parameter or a view of one (a Linear's saved ``weight.t()``), sharded or not."""
    for x in (t, _local(t)):
        if isinstance(x, torch.nn.Parameter) or isinstance(getattr(x, "_base", None), torch.nn.Parameter):
            return True
    return False


def _storage(t: Any) -> torch.UntypedStorage | None:
    t = _local(t)
    if not isinstance(t, torch.Tensor):
        return None
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):   # sparse, nested, subclasses
        return None


def _storage_device(t: Any, st: torch.UntypedStorage) -> torch.device:
    """Where the storage lives; a fake tensor's (--dry-run) is on the device it stands for, not
    on the meta device that holds its storage."""
    d = st.device
    return getattr(t, "fake_device", d) if d.type == "meta" else d


def _on(device: torch.device, st: torch.UntypedStorage, t: Any = None) -> bool:
    d = _storage_device(t, st)
    return d.type == device.type and (device.index is None or d.index == device.index)


def unique_storage_bytes(tensors: Iterable[torch.Tensor | None],
                         device: torch.device | None = None,
                         exclude: set[int] | None = None) -> tuple[int, set[int]]:
    """Bytes of the distinct storages behind ``tensors`` (views and ties counted once).

    Args:
        tensors: any tensors (``None`` skipped); device: count only storages there;
        exclude: storage keys (``_cdata``) to leave out, e.g. the parameters'.

    Returns:
        ``(bytes, keys)``: the total and the storage keys counted.

    Example:
        >>> w = torch.zeros(4, 4); unique_storage_bytes([w, w.t(), w[0]])[0]
        64
    """
    total, keys = 0, set()
    for t in tensors:
        t = _local(t)
        st = _storage(t)
        if st is None or (device is not None and not _on(device, st, t)) or _storage_device(t, st).type == "meta":
            continue
        key = st._cdata
        if key in keys or (exclude and key in exclude):
            continue
        keys.add(key)
        total += st.nbytes()
    return total, keys


def _leaf_tensors(tree: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(tree)
    return [x for x in leaves if isinstance(x, torch.Tensor)]


def _optimizer_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    leaves, _ = tree_flatten([dict(s) for s in opt.state.values()])
    return [x for x in leaves if isinstance(x, torch.Tensor)]


def _optimizer_params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


def optimizer_section(optimizers: Iterable[torch.optim.Optimizer],
                      calls: dict[int, int] | None = None,
                      grad_presence: dict[int, dict[int, list[int]]] | None = None,
                      names: dict[int, str] | None = None) -> OptimizerSection:
    """What each optimizer is and holds: class, hyperparameters, elements, state bytes.

    Hyperparameters come from the first param group (JSON-able: tensors become numbers,
    tuples lists); a key whose value differs between groups holds the list of all groups'
    values, and ``param_groups`` says how many groups there are. ``state_bytes`` counts the
    distinct storages of the state on any device; ``steps`` is the number of ``step()`` calls seen
    (``calls``, by ``id(optimizer)``, from the profiler), else the largest ``step`` in its state
    (which a resumed run's checkpoint carries over, and SGD without momentum never keeps).
    ``grad_presence`` (by ``id(optimizer)``, then ``id(parameter)``: [steps with a gradient, steps
    without]) gives ``grad_gaps``, the parameters some steps left without a gradient, named from
    ``names`` (``id(parameter)`` -> dotted name) where known.

    Example:
        >>> m = torch.nn.Linear(4, 4); opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        >>> optimizer_section([opt]).optimizers[0].class_
        'SGD'
    """
    infos = []
    for opt in optimizers:
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        hyper: dict[str, Any] = {}
        for key in groups[0] if groups else {}:
            values = [_jsonable(g.get(key)) for g in groups]
            hyper[key] = values[0] if all(v == values[0] for v in values) else values
        hyper["param_groups"] = len(groups)
        state_bytes, _ = unique_storage_bytes(_optimizer_tensors(opt))
        steps = 0
        for s in (opt.state.values() if calls is None else ()):
            step = s.get("step") if isinstance(s, dict) else None
            if step is not None:
                steps = max(steps, int(step.item() if isinstance(step, torch.Tensor) else step))
        group0 = opt.param_groups[0] if opt.param_groups else {}
        presence = (grad_presence or {}).get(id(opt), {})
        gaps = [p for p in _optimizer_params(opt) if all(presence.get(id(p), (0, 0)))]
        infos.append(OptimizerInfo(
            class_=type(opt).__name__,
            hyperparams=hyper,
            param_count=sum(p.numel() for p in _optimizer_params(opt)),
            state_bytes=state_bytes,
            steps=int(calls.get(id(opt), 0)) if calls is not None else steps,
            foreach=group0.get("foreach"),
            fused=group0.get("fused"),
            grad_gaps=[(names or {}).get(id(p), f"param[{i}]") for i, p in enumerate(gaps[:20])],
            grad_gap_params=len(gaps),
        ))
    total, _ = unique_storage_bytes(t for opt in optimizers for t in _optimizer_tensors(opt))
    return OptimizerSection(optimizers=infos, state_bytes=total)


class _AllocMode(TorchDispatchMode):
    """Registers every storage an op touches or creates, then updates the peak."""

    def __init__(self, ledger: "MemoryLedger") -> None:
        super().__init__()
        self.ledger = ledger

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        ledger = self.ledger
        ledger._see_all((args, kwargs))
        out = func(*args, **kwargs)
        ledger._see_all(out, resized=True)
        return out


class MemoryLedger:
    """Measures one step's memory ledger (see the module docstring for the definitions).

    Args:
        roots: prefix -> trained root module (names as in ``FlopPass``);
        optimizers: the script's optimizers (may be empty);
        device: where training runs; only storages there are counted.

    ``start()`` / ``set_phase()`` / ``stop()`` are explicit calls a harness makes from hooks;
    start between steps, not inside a forward. ``stop()`` returns ``(Memory,
    activation_bytes_by_module)``.

    Example:
        >>> led = MemoryLedger({"": model}, [opt], torch.device("cpu"))
        >>> led.start(); model(x).sum().backward(); opt.step(); memory, acts = led.stop()
    """

    def __init__(self, roots: dict[str, torch.nn.Module],
                 optimizers: list[torch.optim.Optimizer], device: torch.device) -> None:
        self.roots = dict(roots)
        self.optimizers = list(optimizers)
        self.device = torch.device(device)
        self._names = module_names(self.roots)
        self._active = False
        self._mode: _AllocMode | None = None
        self._saved_hooks: torch.autograd.graph.saved_tensors_hooks | None = None
        self._handles: list[Any] = []
        self._patches: Any = None
        self.phase = "other"

    # -- what the script holds ----------------------------------------------------------
    def _params(self) -> list[torch.nn.Parameter]:
        params = [p for root in self.roots.values() for p in root.parameters()]
        params += [p for opt in self.optimizers for p in _optimizer_params(opt)]
        return params

    def _buffers(self) -> list[torch.Tensor]:
        return [b for root in self.roots.values() for b in root.buffers()]

    def _sample(self) -> None:
        """Read gradient and optimizer-state sizes now; keep the largest seen."""
        params = self._params()
        grads, _ = unique_storage_bytes((p.grad for p in params), self.device,
                                           exclude=self._param_keys)
        self._grads_bytes = max(self._grads_bytes, grads)
        state, _ = unique_storage_bytes(
            (t for opt in self.optimizers for t in _optimizer_tensors(opt)), self.device,
            exclude=self._param_keys)
        self._state_bytes = max(self._state_bytes, state)
        for t in [p.grad for p in params] + [t for o in self.optimizers for t in _optimizer_tensors(o)]:
            self._see(t)

    # -- driving ------------------------------------------------------------------------
    def start(self) -> None:
        """Begin the ledger: note what is alive, install the hooks and the dispatch mode."""
        if self._active:
            raise RuntimeError("MemoryLedger.start() called twice without stop()")
        self._live: dict[int, int] = {}
        # allocations and frees in order, (what, storage key, bytes, stream): the allocator's replay,
        # under the allocator settings the process has as the step starts
        self._events: list[tuple[str, int, int, int]] = []
        from ccprof.profiler.allocator import settings_in_force
        self._allocator = settings_in_force(calls=allocator_calls())
        self._finalizers: list[weakref.finalize] = []
        self._live_bytes = 0
        self._peak_bytes = 0
        self._grads_bytes = 0
        self._state_bytes = 0
        self._stack: list[str] = []
        self._act_keys: dict[int, int] = {}
        self._act_by_module: dict[str, int] = defaultdict(int)
        self._grad_storages: dict[int, int] = {}
        params = self._params()
        self._params_bytes, self._param_keys = unique_storage_bytes(params, self.device)
        self._buffers_bytes, buf_keys = unique_storage_bytes(self._buffers(), self.device,
                                                             exclude=self._param_keys)
        self._skip_act = self._param_keys | buf_keys
        self._active = True
        for t in [*params, *self._buffers()]:
            self._see(t)
        self._sample()
        self._peak_bytes = self._live_bytes
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(self.device)
        names = self._names

        def pre(mod, args):
            name = names.get(mod)
            if name is not None:
                self._stack.append(name)

        def post(mod, args, out):
            name = names.get(mod)
            if name is not None and name in self._stack:
                # pop the innermost entry for this module, whatever sits above it
                idx = len(self._stack) - 1 - self._stack[::-1].index(name)
                del self._stack[idx:]

        def root_inputs(mod, args, kwargs=None):
            # the batch handed to a root module is an input, not an activation. kwargs may be
            # missing: torch calls a hook removed mid-call (the step ends in a forward pre-hook
            # for hand-written updates) without them.
            for t in _leaf_tensors((args, kwargs)):
                st = _storage(t)
                if st is not None:
                    self._skip_act.add(st._cdata)

        def grad_ready(p):
            st = _storage(p.grad)
            if st is not None and _on(self.device, st, p.grad) and st._cdata not in self._param_keys:
                self._grad_storages[st._cdata] = st.nbytes()

        self._handles = [register_module_forward_pre_hook(pre),
                         register_module_forward_hook(post, always_call=True)]
        self._handles += [root.register_forward_pre_hook(root_inputs, with_kwargs=True)
                          for root in self.roots.values()]
        self._handles += [p.register_post_accumulate_grad_hook(grad_ready)
                          for p in {id(p): p for p in params if p.requires_grad}.values()]
        self._saved_hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._saved_hooks.__enter__()
        self._patches = _watch_resizes(self)
        self._mode = _AllocMode(self)
        self._mode.__enter__()

    def set_phase(self, phase: str) -> None:
        """Note the phase (forward|backward|optimizer|other|data); read grads / state sizes."""
        self.phase = normalize_phase(phase)
        if self._active:
            self._sample()

    def stop(self) -> tuple[Memory, dict[str, int]]:
        """End the ledger; return ``(Memory, activation bytes by module name)``."""
        if not self._active:
            raise RuntimeError("MemoryLedger.stop() called before start()")
        try:
            if self._mode is not None:
                self._mode.__exit__(None, None, None)
        finally:
            self._mode = None
            if self._patches is not None:
                self._patches.undo()
                self._patches = None
            if self._saved_hooks is not None:
                self._saved_hooks.__exit__(None, None, None)
                self._saved_hooks = None
            for h in self._handles:
                h.remove()
            self._handles = []
        self._sample()
        self._grads_bytes = max(self._grads_bytes, sum(self._grad_storages.values()))
        self._active = False
        for fin in self._finalizers:
            fin.detach()
        self._finalizers = []
        activations = sum(self._act_keys.values())
        peak = self._peak_bytes
        cuda_max = cuda_reserved = None
        if self.device.type == "cuda" and torch.cuda.is_available():
            cuda_max = int(torch.cuda.max_memory_allocated(self.device))
            cuda_reserved = int(torch.cuda.max_memory_reserved(self.device))
        known = self._params_bytes + self._grads_bytes + self._state_bytes + activations
        memory = Memory(
            peak_bytes=int(peak),
            params_bytes=int(self._params_bytes),
            grads_bytes=int(self._grads_bytes),
            optimizer_state_bytes=int(self._state_bytes),
            activations_bytes=int(activations),
            other_bytes=int(max(0, peak - known)),
            buffers_bytes=int(self._buffers_bytes),
            cuda_max_allocated_bytes=cuda_max,
            cuda_reserved_bytes=cuda_reserved,
            method=METHOD,
            reserved_peak_bytes=_replayed(self._events, self._allocator),
            allocator=self._allocator if self._events else None,
        )
        self._events = []
        by_module = {k: int(v) for k, v in sorted(self._act_by_module.items()) if v}
        return memory, by_module

    # -- bookkeeping --------------------------------------------------------------------
    def _see(self, t: Any, resized: bool = False) -> None:
        t = _local(t)
        st = _storage(t)
        if st is None or not _on(self.device, st, t):
            return
        key = st._cdata
        nbytes = st.nbytes()
        old = self._live.get(key)
        if old is None:
            if nbytes == 0:
                return
            self._live[key] = nbytes
            self._live_bytes += nbytes
            self._finalizers.append(weakref.finalize(st, self._freed, key))
            self._events.append(("alloc", key, nbytes, current_stream_key()))
        elif resized and old != nbytes:
            self._live[key] = nbytes
            self._live_bytes += nbytes - old
            self._events.append(("alloc", key, nbytes, current_stream_key()) if nbytes else ("free", key, 0, 0))
        else:
            return
        if self._live_bytes > self._peak_bytes:
            self._peak_bytes = self._live_bytes

    def _resized(self, st: torch.UntypedStorage) -> None:
        """A counted storage resized in place now holds ``st.nbytes()``. One not counted yet is left
        to the dispatch mode, which sees it (and its device) when an op writes into it."""
        if not self._active:
            return
        key = st._cdata
        old = self._live.get(key)
        if old is None or old == st.nbytes():
            return
        self._live[key] = st.nbytes()
        self._live_bytes += st.nbytes() - old
        self._peak_bytes = max(self._peak_bytes, self._live_bytes)
        self._events.append(("alloc", key, st.nbytes(), current_stream_key()) if st.nbytes() else ("free", key, 0, 0))

    def _see_all(self, tree: Any, resized: bool = False) -> None:
        if not self._active:
            return
        leaves, _ = tree_flatten(tree)
        for x in leaves:
            if isinstance(x, torch.Tensor):
                self._see(x, resized)

    def _freed(self, key: int) -> None:
        nbytes = self._live.pop(key, 0)
        self._live_bytes -= nbytes
        if nbytes:
            self._events.append(("free", key, 0, 0))

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if not self._active:
            return t
        st = _storage(t)
        if st is None or not _on(self.device, st, t):
            return t
        key = st._cdata
        if key in self._skip_act or key in self._act_keys:
            return t
        if _is_parameter(t):
            # a parameter's storage that was not there at start: FSDP's gathered (unsharded) weights,
            # saved by the matmul that uses them. They are weights held for compute and freed by the
            # engine, not the step's activations; they stay in the peak (``other``).
            self._skip_act.add(key)
            return t
        nbytes = st.nbytes()
        self._act_keys[key] = nbytes
        for name in set(self._stack):
            self._act_by_module[name] += nbytes
        self._see(t)
        return t


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


def _replayed(events: list[tuple[str, int, int, int]], settings: AllocatorSettings | None = None) -> int | None:
    """The caching allocator's peak reserved bytes for the ledger's events under ``settings`` (None
    without any events)."""
    if not events:
        return None
    from ccprof.profiler.allocator import reserved_peak
    return int(reserved_peak(events, settings)[0])


def _watch_resizes(ledger: MemoryLedger) -> Any:
    """``UntypedStorage.resize_`` tells ``ledger`` each new size while the ledger runs; returns the
    Patches that put it back."""
    from ccprof.profiler.dryrun import Patches

    original = torch.UntypedStorage.resize_

    def resize_(st: torch.UntypedStorage, size: int) -> Any:
        out = original(st, size)
        ledger._resized(st)
        return out
    patches = Patches()
    patches.set(torch.UntypedStorage, "resize_", resize_)
    return patches
