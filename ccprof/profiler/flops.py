"""FLOPs of one training step, by phase, module and aten op, and the op list the cost model reads.

``FlopPass`` wraps ``torch.utils.flop_counter.FlopCounterMode`` (it counts the real
backward, not "2x forward") and nests a second dispatch mode under it that records, for every
aten kernel that runs, its dtype, phase, FLOPs (the same formulas), input and output shapes,
the module that owns it (``_flop_ops.ModuleOwners``: forward ops the module running them,
backward ops the module whose forward made their autograd node) and the bytes it reads and writes: the ``OpCost`` list the cost model (``ccprof.hardware``)
needs to cost the step on another GPU. Three things a CPU run cannot show are recorded from
its dataflow: how each op would run under CUDA autocast (a virtual 16-bit tag follows every
tensor through the step, with the casts autocast would add; ``autocast_ops``), which forward
work backward recomputes (activation checkpointing), and the bytes torch.compile's fusion of
the non-matmul ops between two matmuls would still move (``FlopPass.fusion``).

The harness drives the pass from hooks, so it works as explicit calls::

    fp = FlopPass({"": model})
    fp.start()
    fp.set_phase("forward");  loss = model(x).sum()
    fp.set_phase("backward"); loss.backward()
    fp.set_phase("optimizer"); opt.step()
    flops, ops = fp.stop()       # Flops, list[OpCost]

The phases and the extra formulas are in ``flop_formulas.py``; ``fvcore_check.fvcore_forward_flops``
is the cross-check: fvcore's jit-traced count of one forward. What one op and its tensors are
(names, bytes, the module it ran in) is in ``_flop_ops.py``; the autocast and fusion-gap tags
that follow each tensor through the step in ``_flop_dataflow.py``.
"""
from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

from ccprof.artefacts.profile import Flops, OpCost, module_ancestors
from ccprof.profiler._flop_dataflow import _DataflowTags
from ccprof.profiler._flop_ops import (  # noqa: F401  (module_names, op_name, scope_of: re-exported)
    COLLECTIVE_NAMESPACES,
    P2P_OPS,
    GlobalOnly,
    ModuleOwners,
    _aliases_only,
    _dtype_of,
    _schema_attrs,
    _tensor_bytes,
    _tensors,
    collective_attrs,
    module_names,
    op_name,
    p2p_phase,
    scope_of,
)
from ccprof.profiler.flop_formulas import (  # noqa: F401  (re-exported: the op rows and tests name them here)
    EXTRA_FLOP_FORMULAS,
    PHASES,
    normalize_phase,
    register_extra_flop_formula,
)

__all__ = [
    "PHASES", "normalize_phase", "EXTRA_FLOP_FORMULAS", "register_extra_flop_formula", "FlopPass",
    "module_names", "op_name",
]


class _OpCostMode(TorchDispatchMode):
    """Sits under FlopCounterMode and records every kernel that actually runs."""

    def __init__(self, owner: "FlopPass") -> None:
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            self.owner._record(func, args, kwargs, out)
        except Exception as exc:  # never break the user's step over bookkeeping
            self.owner._errors.append(f"{op_name(func)}: {type(exc).__name__}: {exc}")
        return out


@functools.cache
def _device_kernel(op: torch._ops.OpOverload) -> bool:
    """Whether ``op`` has a kernel of its own on a device (CPU or CUDA) that FlopCounterMode would
    skip for its C++ composite (``silu_backward``'s ``math_silu_backward``). Ops with a Python
    decomposition registered (``native_batch_norm`` -> ``_native_batch_norm_legit``: torch._decomp's
    functional twin, itself one kernel) decompose as they always did: the op tables name those."""
    try:
        name = op.name()
        return (torch._C.DispatchKey.CompositeImplicitAutograd not in op.py_kernels
                and any(torch._C._dispatch_has_kernel_for_dispatch_key(name, key) for key in ("CPU", "CUDA")))
    except RuntimeError:            # an op the dispatcher does not list (prim::device)
        return False


class _KernelRegistry(dict):
    """FlopCounterMode's FLOP formulas, which also tell it what not to decompose.

    FlopCounterMode decomposes every op missing from its registry that has a
    CompositeImplicitAutograd kernel (``OpOverload.decompose``), even one that also has a device
    kernel of its own: ``aten.silu_backward`` (one kernel on CUDA and on the CPU) reached the op
    rows as ``sigmoid``, ``empty_like``, ``fill_``, ``sub_``, ``add`` and three ``mul``, so every
    SwiGLU model's backward was costed as eight elementwise kernels where the GPU runs one. An
    op with a device kernel counts as known here (its FLOPs stay 0: pointwise), so it reaches
    the op rows as the kernel it is; ops with a decomposition only are decomposed as before.
    """

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        return isinstance(key, torch._ops.OpOverload) and _device_kernel(key)


class FlopPass(_DataflowTags):
    """Counts one step's FLOPs (by phase, module and op) and collects ``OpCost`` rows.

    Args:
        roots: prefix -> root module being trained; one root gets prefix "" so module
            names read ``model.layers.0.self_attn``; with several roots each name starts
            with its key (``student.model.layers.0``). The root itself is named by its key.

    ``start()`` / ``set_phase()`` / ``stop()`` are explicit calls so a harness can drive
    them from hooks. Until ``set_phase`` is first called, work inside the autograd engine
    counts as backward and everything else as forward. Work inside the autograd engine is
    always backward. ``stop()`` returns ``(Flops, list[OpCost])``; afterwards
    ``forward_by_module`` holds the forward-only FLOPs by module name and ``bytes_by_module``
    the bytes its ops read and write, all phases. Every by-module figure counts the ops a module
    owns (``ModuleOwners``) and its descendants' (a ``ModuleList`` gets its blocks' sum); work
    outside every module (the script's own loss, the optimizer) is in no module:
    ``Flops.module_frac()`` is the share that is.
    """

    def __init__(self, roots: dict[str, torch.nn.Module], max_rows: int | None = None) -> None:
        self.roots = dict(roots)
        self.max_rows = max_rows            # cap on distinct op rows (evaluation episodes)
        self.dropped_flops = 0
        self._paused = False
        self._names = module_names(self.roots)
        self._known = set(self._names.values())
        self._chain = module_ancestors(self._known)    # name -> itself and its ancestors, innermost first
        self._owners: ModuleOwners | None = None
        self._counter: FlopCounterMode | None = None
        self._op_mode: _OpCostMode | None = None
        self._phase: str | None = None
        self._ops: dict[tuple[str, str, str], list[int]] = {}
        self._by_phase: dict[str, int] = defaultdict(int)
        self.forward_by_module: dict[str, int] = {}
        self.bytes_by_module: dict[str, int] = {}
        self._fwd_by_module: dict[str, int] = defaultdict(int)
        self._own_flops: dict[str, int] = defaultdict(int)      # by owning module, children not included
        self._own_bytes: dict[str, int] = defaultdict(int)
        self._row_modules: dict[tuple, dict[str, int]] = {}     # op row -> owning module -> calls
        self._unowned: list[tuple[tuple | None, int, int]] = []  # forward (row, FLOPs, bytes) with no module running
        self._errors: list[str] = []
        self._param_ids: set[int] = set()
        self._param_shapes: set[tuple[int, ...]] = set()
        self._info: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._param_copies: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._cast_seen: set[int] = set()
        self._gaps: dict[tuple[str, int], list[int]] = {}
        self._gap_index: dict[str, int] = {}
        self._gap_open: dict[str, bool] = {}
        self._recompute_depth = 0
        self._hooks: list[Any] = []
        self.fusion: dict[str, dict[str, int]] = {}
        self.module_calls = 0
        self._recompute_flops = 0

    # -- driving ------------------------------------------------------------------------
    def start(self) -> None:
        """Begin counting (enters the dispatch modes and the module tracker)."""
        if self._counter is not None:
            raise RuntimeError("FlopPass.start() called twice without stop()")
        self._ops, self._by_phase, self._fwd_by_module = {}, defaultdict(int), defaultdict(int)
        self._own_flops, self._own_bytes, self._row_modules = defaultdict(int), defaultdict(int), {}
        self._unowned = []
        self._owners = ModuleOwners(self._names)
        self._errors, self._phase = [], None
        params = [p for root in self.roots.values() for p in root.parameters()]
        self._param_ids = {id(p) for p in params}
        self._param_shapes = set()
        for p in params:
            shape = tuple(p.shape)
            self._param_shapes.add(shape)
            if len(shape) == 2:
                self._param_shapes.add(shape[::-1])
        self._info, self._cast_seen = WeakIdKeyDictionary(), set()
        self._param_copies = WeakIdKeyDictionary()
        self._gaps, self._gap_index, self._gap_open = {}, {}, {}
        self._recompute_depth, self.module_calls, self._recompute_flops = 0, 0, 0
        self.dropped_flops = 0
        self._hooks = [register_module_forward_pre_hook(self._on_module_pre),
                       register_module_forward_hook(self._on_module_post, with_kwargs=True, always_call=True)]
        counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
        counter.mod_tracker = GlobalOnly()     # ModuleOwners attributes the ops (a private attribute of torch's)
        counter.flop_registry = _KernelRegistry(counter.flop_registry)
        self._op_mode = _OpCostMode(self)
        self._op_mode.__enter__()       # below: sees the kernels FlopCounterMode runs
        try:
            counter.__enter__()         # on top: decomposes what it cannot count
        except BaseException:
            self._op_mode.__exit__(None, None, None)
            self._op_mode = None
            raise
        self._counter = counter

    def set_phase(self, phase: str) -> None:
        """Tell the pass which phase runs from now on: forward|backward|optimizer|other|data."""
        # the DataLoader's own work (collate in the main process) keeps its name: the batch time
        # prices it, so the cost model does not run it as GPU kernels too
        self._phase = "data" if phase == "data" else normalize_phase(phase)

    def pause(self) -> None:
        """Stop counting until :meth:`resume` (work between steps that is not the step: a harness
        pauses the pass around evaluation). The dispatch modes stay entered; nothing is recorded."""
        if self._counter is not None and not self._paused:
            self._paused = True
            self._counter._count_flops = lambda func_packet, out, args, kwargs: out   # instance shadow

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if self._counter is not None:
                self._counter.__dict__.pop("_count_flops", None)

    def stop(self) -> tuple[Flops, list[OpCost]]:
        """Stop counting; return the step's ``Flops`` and its ``OpCost`` rows."""
        if self._counter is None or self._op_mode is None:
            raise RuntimeError("FlopPass.stop() called before start()")
        self.resume()
        counter, op_mode = self._counter, self._op_mode
        self._counter = self._op_mode = None
        for h in self._hooks:
            h.remove()
        self._hooks = []
        try:
            counter.__exit__(None, None, None)
        finally:
            op_mode.__exit__(None, None, None)
        counts = counter.get_flop_counts()
        per_step = int(sum(counts.get("Global", {}).values()))
        by_module = self._inclusive(self._own_flops)
        by_op = {op_name(k): int(v) for k, v in counts.get("Global", {}).items() if v}
        self.forward_by_module = self._inclusive(self._fwd_by_module)
        self.bytes_by_module = self._inclusive(self._own_bytes)
        recompute = min(int(self._recompute_flops), per_step)
        flops = Flops(
            per_step=per_step,
            forward=int(self._by_phase.get("forward", 0)),
            backward=int(self._by_phase.get("backward", 0)),
            model_per_step=per_step - recompute,
            recompute=recompute,
            by_module={k: v for k, v in sorted(by_module.items()) if v},
            by_op=dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        )
        ops = []
        for key, row in self._ops.items():
            op, dtype, phase, shapes, out_shapes, fixed, scope, attrs, amp, recomputed = key
            ops.append(OpCost(
                op=op, dtype=dtype, phase=phase, count=row[0], flops=row[1], bytes_read=row[2],
                bytes_written=row[3], shapes=[list(x) for x in shapes], out_shapes=[list(x) for x in out_shapes],
                fixed=list(fixed), scope=scope, attrs=dict(attrs), autocast=amp, autocast_bytes=row[4],
                recompute=recomputed, modules=dict(sorted(self._row_modules.get(key, {}).items()))))
        ops.sort(key=lambda o: (-o.flops, -(o.bytes_read + o.bytes_written), o.op))
        self.fusion = self._fusion_summary()
        return flops, ops

    def _inclusive(self, own: dict[str, int]) -> dict[str, int]:
        """Per-module totals with each module's descendants added in, by name."""
        out: dict[str, int] = defaultdict(int)
        for name, v in own.items():
            for a in self._chain.get(name, (name,)):
                out[a] += v
        return {k: int(v) for k, v in sorted(out.items()) if v}

    @property
    def errors(self) -> list[str]:
        """Bookkeeping failures seen during the last pass (the step itself still ran)."""
        return list(self._errors)

    # -- recording ----------------------------------------------------------------------
    def _current_phase(self) -> str:
        if torch._C._current_graph_task_id() != -1:
            return "backward"
        return self._phase or "forward"

    def _on_module_pre(self, module, args) -> None:
        if self._paused:
            return
        self.module_calls += 1
        if torch._C._current_graph_task_id() != -1:
            self._recompute_depth += 1      # a module's forward inside backward: recomputation
        if self._owners is not None:
            self._owners.pre(module, args)

    def _on_module_post(self, module, args, kwargs, output=None) -> None:
        # called also when the forward raised (always_call): checkpoint's early stop ends a
        # recomputed forward with an exception, and the recompute must end with it
        if self._recompute_depth and torch._C._current_graph_task_id() != -1:
            self._recompute_depth -= 1
        if self._owners is not None and not self._paused:
            adopted = self._owners.post(module, args, kwargs, output)
            if adopted is not None:
                self._adopt(adopted)

    def _adopt(self, name: str) -> None:
        """Book the forward work counted with no module running to ``name``, which was running
        all along (it started before the pass did)."""
        for key, flops, nbytes in self._unowned:
            self._own_flops[name] += flops
            self._own_bytes[name] += nbytes
            self._fwd_by_module[name] += flops
            if key is not None:
                calls = self._row_modules.setdefault(key, {})
                calls[name] = calls.get(name, 0) + 1
        self._unowned = []

    @staticmethod
    def _attrs(func, args, kwargs, out) -> dict[str, Any]:
        if func.namespace in COLLECTIVE_NAMESPACES:
            return collective_attrs(func, args, kwargs, out)
        return _schema_attrs(func, args, kwargs)

    def _record(self, func, args, kwargs, out) -> None:
        if self._paused:
            return
        outputs = _tensors(out)
        # a collective writes into its tensors without saying so in its schema (c10d.allreduce_)
        collective = func.namespace in COLLECTIVE_NAMESPACES
        if not outputs and not (collective and str(func._overloadpacket) in P2P_OPS):
            return                                  # metadata queries, scalars (a send returns only its Work)
        inputs = _tensors((args, kwargs))
        if func.is_view or (not collective and not func._schema.is_mutable and _aliases_only(inputs, outputs)):
            # views move no data and launch nothing, but their outputs carry the input's tags
            # (``_unsafe_view`` and ``alias`` return tensors that are not autograd views)
            src = self._tinfo(inputs[0]) if inputs else None
            if src is not None:
                for t in outputs:
                    if self._info.get(t) is None:
                        self._info[t] = src
            return
        counter = self._counter
        registry = counter.flop_registry if counter is not None else {}
        packet = func._overloadpacket
        flops = 0
        if packet in registry:
            flops = int(registry[packet](*args, **kwargs, out_val=out))
        phase = self._current_phase()
        name = op_name(func)
        if collective and name in P2P_OPS:
            phase = p2p_phase(inputs) or phase         # a pipeline's: the schedule's action's phase (tag_p2p)
        recompute = phase == "backward" and self._recompute_depth > 0
        if recompute:
            self._recompute_flops += flops
        if name in ("aten._to_copy", "aten.clone", "aten.contiguous") and inputs and self._is_param(inputs[0]):
            for t in outputs:
                self._param_copies[t] = True
        owner = self._owners.owner() if self._owners is not None else None
        amp, amp_bytes = self._autocast(name, func, phase, inputs, outputs, owner)
        self._track_gap(name, phase, inputs, outputs, in_model=owner is not None)
        fixed = self._fixed(phase, inputs, outputs)
        key = (name, _dtype_of(inputs, outputs), phase,
               tuple(tuple(t.shape) for t in inputs), tuple(tuple(t.shape) for t in outputs),
               fixed, scope_of(self._chain.get(owner, ()) if owner is not None else ()),
               tuple(sorted(self._attrs(func, args, kwargs, out).items())), amp, recompute)
        nbytes = sum(_tensor_bytes(t) for t in inputs) + sum(_tensor_bytes(t) for t in outputs)
        if owner is not None:
            self._own_flops[owner] += flops
            self._own_bytes[owner] += nbytes
            if phase == "forward":
                self._fwd_by_module[owner] += flops
        if flops:
            self._by_phase[phase] += flops
        row = self._ops.get(key)
        if row is None:
            if self.max_rows is not None and len(self._ops) >= self.max_rows:
                # capped (generate(): every token a new shape): FLOPs still count, rows do not
                self.dropped_flops += flops
                if owner is None and phase == "forward":
                    self._unowned.append((None, flops, nbytes))
                return
            row = self._ops[key] = [0, 0, 0, 0, 0]
        row[0] += 1
        row[1] += flops
        row[2] += sum(_tensor_bytes(t) for t in inputs)
        row[3] += sum(_tensor_bytes(t) for t in outputs)
        row[4] += amp_bytes
        if owner is not None:
            calls = self._row_modules.setdefault(key, {})
            calls[owner] = calls.get(owner, 0) + 1
        elif phase == "forward":
            self._unowned.append((key, flops, nbytes))

    def _fixed(self, phase: str, inputs: list, outputs: list) -> tuple[int, ...]:
        """Indices (inputs, then outputs) of tensors that do not grow with the batch: parameters
        (and views or copies of them), every tensor of the optimizer step, and backward outputs
        of a parameter's shape (weight gradients; an activation gradient of the same shape is
        taken for one too, which only tiny models meet)."""
        fixed = []
        n_in = len(inputs)
        for i, t in enumerate((*inputs, *outputs)):
            if t.dim() == 0:
                continue
            if phase == "optimizer" or self._is_param(t) or (
                    phase != "forward" and i >= n_in and tuple(t.shape) in self._param_shapes):
                fixed.append(i)
        return tuple(fixed)
