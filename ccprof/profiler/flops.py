"""FLOPs of one training step, by phase, module and aten op, and the op list the cost model reads.

``FlopPass`` wraps ``torch.utils.flop_counter.FlopCounterMode`` (it counts the real
backward, not "2x forward", and attributes work to modules through its module tracker)
and nests a second dispatch mode under it that records, for every aten kernel that runs,
its dtype, phase, FLOPs (the same formulas), input and output shapes, the module it ran in
and the bytes it reads and writes: the ``OpCost`` list the cost model (``ccprof.hardware``)
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
is the cross-check: fvcore's jit-traced count of one forward.
"""
from __future__ import annotations

import weakref
from collections import defaultdict
from typing import Any

import torch
from torch.autograd.graph import register_multi_grad_hook
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.module_tracker import ModuleTracker

from torch.utils.weak import WeakIdKeyDictionary

from ccprof.profiler.autocast_ops import autocast_class
from ccprof.profiler.flop_formulas import (  # noqa: F401  (re-exported: the op rows and tests name them here)
    EXTRA_FLOP_FORMULAS, PHASES, normalize_phase, register_extra_flop_formula,
)
from ccprof.artefacts.profile import Flops, OpCost
from ccprof.artefacts.vocab import MODEL_PHASES, dtype_name

__all__ = [
    "PHASES", "normalize_phase", "EXTRA_FLOP_FORMULAS", "register_extra_flop_formula", "FlopPass",
    "module_names", "op_name",
]

_LOW = (torch.bfloat16, torch.float16)
_GAP_PHASES = MODEL_PHASES


def _base(name: str) -> str:
    """``"aten.addmm"`` -> ``"addmm"``."""
    return name.split(".", 1)[1] if name.startswith("aten.") else name


def scope_of(parents: Any) -> str:
    """The module an op ran in, for grouping: the outermost module with a block index in its
    path (``transformer.h.3.attn`` -> ``transformer.h.*``), else the deepest module, cut at two
    components. ``parents`` are ModuleTracker names ("Global" and the root "" are ignored)."""
    names = [n for n in parents if n and n != "Global"]
    numbered = [n for n in names if any(part.isdigit() for part in n.split("."))]
    if numbered:
        name = min(numbered, key=lambda n: (n.count("."), n))
        parts = name.split(".")
        cut = next(i for i, part in enumerate(parts) if part.isdigit())
        return ".".join(parts[:cut] + ["*"])
    if not names:
        return ""
    deepest = max(names, key=lambda n: (n.count("."), n))
    return ".".join(deepest.split(".")[:2])


def _schema_attrs(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The non-tensor arguments the cost model reads: conv ``groups``/``transposed``, attention ``causal``."""
    out: dict[str, Any] = {}
    try:
        arguments = func._schema.arguments
    except AttributeError:
        return out
    for i, a in enumerate(arguments):
        if a.name not in ("groups", "transposed", "is_causal"):
            continue
        if a.name in kwargs:
            val = kwargs[a.name]
        elif i < len(args):
            val = args[i]
        else:
            val = a.default_value if a.has_default_value() else None
        if isinstance(val, (bool, int)):
            out["causal" if a.name == "is_causal" else a.name] = val
    return out


def op_name(func: Any) -> str:
    """``aten.mm`` for ``aten.mm.default``: the op name used in ``by_op`` and ``OpCost.op``."""
    packet = getattr(func, "_overloadpacket", func)
    return str(packet)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else (prefix or name)


def module_names(roots: dict[str, torch.nn.Module]) -> dict[torch.nn.Module, str]:
    """Module -> dotted name relative to its root, prefixed with the root's key when not ""."""
    names: dict[torch.nn.Module, str] = {}
    for prefix, root in roots.items():
        for name, mod in root.named_modules(remove_duplicate=True):
            names.setdefault(mod, _join(prefix, name))
    return names


class _NamedModuleTracker(ModuleTracker):
    """ModuleTracker that names the modules of our roots by their dotted path, not class name."""

    def __init__(self, names: dict[torch.nn.Module, str]) -> None:
        super().__init__()
        self._ccprof_names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary(names)

    def _get_mod_name(self, mod):  # overrides a private torch helper
        name = self._ccprof_names.get(mod)
        return name if name is not None else super()._get_mod_name(mod)

    # torch's tracker registers the backward "leave module" hook on positional inputs only,
    # so a module called with keywords (HF attention: ``self_attn(hidden_states=...)``)
    # never leaves in backward and collects its predecessors' backward FLOPs. Register both
    # backward hooks after forward, from the positional and keyword inputs alike.
    def _fw_pre_hook(self, mod, input) -> None:
        self._get_append_fn(self._get_mod_name(mod), False)()

    def _fw_post_hook_kw(self, mod, args, kwargs, output) -> None:
        name = self._get_mod_name(mod)
        self._get_pop_fn(name, False)()
        for tree, make in (((args, kwargs), self._get_pop_fn), (output, self._get_append_fn)):
            tensors = [t for t in _tensors(tree) if t.requires_grad]
            if tensors:
                self._hooks.append(register_multi_grad_hook(tensors, make(name, True)))

    def __enter__(self):
        self._fw_pre_handle = register_module_forward_pre_hook(self._fw_pre_hook)
        self._fw_post_handle = register_module_forward_hook(self._fw_post_hook_kw, with_kwargs=True)
        return self


def _tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches for ``t``: its elements, capped by its storage (broadcasts)."""
    nbytes = t.numel() * t.element_size()
    try:
        return min(nbytes, t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError, TypeError):   # sparse, nested, subclasses
        return nbytes


def _tensors(tree: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(tree)
    return [x for x in leaves if isinstance(x, torch.Tensor)]


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def _dtype_of(inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> str:
    """The dtype that sets the kernel's peak: first floating input, else first tensor."""
    for t in inputs:
        if t.is_floating_point() or t.is_complex():
            return dtype_name(t.dtype)
    for t in (*inputs, *outputs):
        return dtype_name(t.dtype)
    return "none"


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


class FlopPass:
    """Counts one step's FLOPs (by phase, module and op) and collects ``OpCost`` rows.

    Args:
        roots: prefix -> root module being trained; one root gets prefix "" so module
            names read ``model.layers.0.self_attn``; with several roots each name starts
            with its key (``student.model.layers.0``). The root itself is named by its key.

    ``start()`` / ``set_phase()`` / ``stop()`` are explicit calls so a harness can drive
    them from hooks. Until ``set_phase`` is first called, work inside the autograd engine
    counts as backward and everything else as forward. Work inside the autograd engine is
    always backward. ``stop()`` returns ``(Flops, list[OpCost])``; afterwards
    ``forward_by_module`` holds the forward-only FLOPs by module name.
    """

    def __init__(self, roots: dict[str, torch.nn.Module], max_rows: int | None = None) -> None:
        self.roots = dict(roots)
        self.max_rows = max_rows            # cap on distinct op rows (evaluation episodes)
        self.dropped_flops = 0
        self._paused = False
        self._names = module_names(self.roots)
        self._known = set(self._names.values())
        self._counter: FlopCounterMode | None = None
        self._op_mode: _OpCostMode | None = None
        self._phase: str | None = None
        self._ops: dict[tuple[str, str, str], list[int]] = {}
        self._by_phase: dict[str, int] = defaultdict(int)
        self.forward_by_module: dict[str, int] = {}
        self._fwd_by_module: dict[str, int] = defaultdict(int)
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
                       register_module_forward_hook(self._on_module_post)]
        counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
        counter.mod_tracker = _NamedModuleTracker(self._names)
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
        by_module = {name: int(sum(ops.values())) for name, ops in counts.items()
                     if name in self._known}
        by_op = {op_name(k): int(v) for k, v in counts.get("Global", {}).items() if v}
        self.forward_by_module = {k: int(v) for k, v in self._fwd_by_module.items() if v}
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
        ops = [
            OpCost(op=op, dtype=dtype, phase=phase, count=row[0], flops=row[1],
                   bytes_read=row[2], bytes_written=row[3], shapes=[list(x) for x in shapes],
                   out_shapes=[list(x) for x in out_shapes], fixed=list(fixed), scope=scope,
                   attrs=dict(attrs), autocast=amp, autocast_bytes=row[4], recompute=recomputed)
            for (op, dtype, phase, shapes, out_shapes, fixed, scope, attrs, amp, recomputed), row
            in self._ops.items()
        ]
        ops.sort(key=lambda o: (-o.flops, -(o.bytes_read + o.bytes_written), o.op))
        self.fusion = self._fusion_summary()
        return flops, ops

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

    def _on_module_post(self, module, args, output) -> None:
        if self._recompute_depth and torch._C._current_graph_task_id() != -1:
            self._recompute_depth -= 1

    def _tinfo(self, t: torch.Tensor) -> list | None:
        """[would-be-16-bit, gap key, bytes, escaped] of a tensor produced in this step (or its view's base)."""
        info = self._info.get(t)
        if info is None and t._base is not None:
            info = self._info.get(t._base)
        return info

    def _is_param(self, t: torch.Tensor) -> bool:
        """A parameter, a view of one, or a dtype copy of one (autocast's weight casts)."""
        for x in (t, t._base):
            if x is not None and (id(x) in self._param_ids or x in self._param_copies):
                return True
        return False

    def _record(self, func, args, kwargs, out) -> None:
        if self._paused:
            return
        outputs = _tensors(out)
        if not outputs:
            return                                  # metadata queries, scalars
        inputs = _tensors((args, kwargs))
        if func.is_view or (not func._schema.is_mutable and _aliases_only(inputs, outputs)):
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
        recompute = phase == "backward" and self._recompute_depth > 0
        if recompute:
            self._recompute_flops += flops
        if name in ("aten._to_copy", "aten.clone", "aten.contiguous") and inputs and self._is_param(inputs[0]):
            for t in outputs:
                self._param_copies[t] = True
        amp, amp_bytes = self._autocast(name, func, phase, inputs, outputs)
        self._track_gap(name, phase, inputs, outputs)
        parents = counter.mod_tracker.parents if counter is not None else ()
        fixed = self._fixed(phase, inputs, outputs)
        key = (name, _dtype_of(inputs, outputs), phase,
               tuple(tuple(t.shape) for t in inputs), tuple(tuple(t.shape) for t in outputs),
               fixed, scope_of(parents), tuple(sorted(_schema_attrs(func, args, kwargs).items())),
               amp, recompute)
        row = self._ops.get(key)
        if row is None:
            if self.max_rows is not None and len(self._ops) >= self.max_rows:
                # capped (generate(): every token a new shape): FLOPs still count, rows do not
                self.dropped_flops += flops
                if flops:
                    self._by_phase[phase] += flops
                return
            row = self._ops[key] = [0, 0, 0, 0, 0]
        row[0] += 1
        row[1] += flops
        row[2] += sum(_tensor_bytes(t) for t in inputs)
        row[3] += sum(_tensor_bytes(t) for t in outputs)
        row[4] += amp_bytes
        if flops:
            self._by_phase[phase] += flops
            if phase == "forward" and counter is not None:
                for mod in counter.mod_tracker.parents:
                    if mod in self._known:
                        self._fwd_by_module[mod] += flops

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

    # -- autocast: how the op would run under torch.autocast("cuda") ----------------------
    def _low(self, t: torch.Tensor) -> bool:
        info = self._tinfo(t)
        return info[0] if info is not None else t.dtype in _LOW

    def _autocast(self, name: str, func, phase: str, inputs: list, outputs: list) -> tuple[str, int]:
        """(class, bytes moved) of the op under autocast; records the casts autocast would add.

        Forward ops on autocast's lower-precision list compute in 16-bit and get a 16-bit copy
        of each fp32 input (parameters once per step: autocast caches their casts); ops on its
        fp32 list get an fp32 copy of 16-bit inputs; the rest follow their inputs (type
        promotion: any fp32 operand of more than 0 dimensions makes the result fp32). Each
        cast of a tensor that needs a gradient has a backward cast the other way.
        """
        floats = [t for t in inputs if t.is_floating_point() and t.dim() > 0]
        if phase in MODEL_PHASES:
            cls = autocast_class(_base(name), phase == "backward")
        else:
            cls = "promote"
        if name in ("aten._to_copy", "aten.copy_", "aten.to"):
            cls = "explicit"                          # an explicit dtype is not autocast's to change
        if cls == "lower":
            out_low = True
            if phase == "forward":
                for t in floats:
                    if not self._low(t):
                        self._add_cast(t, to_low=True)
        elif cls == "fp32":
            out_low = False
            if phase == "forward":
                for t in floats:
                    if self._low(t):
                        self._add_cast(t, to_low=False)
        elif cls == "explicit" or not floats:
            out_low = None                            # the output's own dtype decides
        elif func._schema.is_mutable and inputs:
            out_low = self._low(inputs[0])            # in place: the mutated tensor keeps its dtype
        else:
            out_low = all(self._low(t) for t in floats)
        nbytes = 0
        for t in inputs:
            if not t.is_floating_point():
                low = False
            elif cls in ("lower", "fp32"):
                low = cls == "lower"                  # reads the copy autocast made
            else:
                low = self._low(t)
            nbytes += _virtual_bytes(t, low)
        for t in outputs:
            low = (t.dtype in _LOW) if out_low is None or not t.is_floating_point() else out_low
            nbytes += _virtual_bytes(t, low)
            info = self._info.get(t)
            if info is None:
                self._info[t] = [low, None, _tensor_bytes(t), False]
            else:
                info[0] = low
        computes_low = out_low if out_low is not None else any(t.dtype in _LOW for t in outputs)
        return ("low" if computes_low else "fp32"), nbytes

    def _add_cast(self, t: torch.Tensor, to_low: bool) -> None:
        """Record the dtype copy autocast would add for ``t`` (and its backward twin)."""
        if self._is_param(t):
            if id(t) in self._cast_seen or (t._base is not None and id(t._base) in self._cast_seen):
                return
            self._cast_seen.add(id(t._base if t._base is not None else t))
        n = t.numel()
        src, dst = (4, 2) if to_low else (2, 4)
        rows = [("forward", n * src, n * dst)]
        if t.requires_grad:
            rows.append(("backward", n * dst, n * src))
        for phase, read, written in rows:
            key = ("aten._to_copy", "float32" if to_low == (phase == "forward") else "bfloat16", phase,
                   (tuple(t.shape),), (tuple(t.shape),), (0, 1) if self._is_param(t) else (), "", (),
                   "cast", False)
            row = self._ops.get(key)
            if row is None:
                row = self._ops[key] = [0, 0, 0, 0, 0]
            row[0] += 1
            row[4] += read + written

    # -- fusion gaps: what torch.compile would fuse -----------------------------------------
    def _track_gap(self, name: str, phase: str, inputs: list, outputs: list) -> None:
        """Group the non-matmul ops between two matmuls of a phase, with the bytes entering and
        leaving each group (a tensor leaves when a later op outside the group reads it)."""
        delimiter = autocast_class(_base(name), phase == "backward") == "lower"
        for ph in _GAP_PHASES:                     # a phase change ends the other phases' gaps
            if ph != phase:
                self._gap_open[ph] = False
        for t in inputs:
            info = self._tinfo(t)
            if info is not None and info[1] is not None and not info[3]:
                here = self._gap_open.get(phase) and info[1] == (phase, self._gap_index.get(phase, 0))
                if not here or delimiter:
                    info[3] = True
                    self._gaps[info[1]][3] += info[2]
        if phase not in _GAP_PHASES or delimiter:
            self._gap_open[phase] = False
            return
        if not self._gap_open.get(phase):
            self._gap_index[phase] = self._gap_index.get(phase, 0) + 1
            self._gap_open[phase] = True
        gap = (phase, self._gap_index[phase])
        row = self._gaps.setdefault(gap, [0, 0, 0, 0])   # ops, bytes, bytes in, bytes out
        row[0] += 1
        row[1] += sum(_tensor_bytes(t) for t in (*inputs, *outputs))
        for t in inputs:
            info = self._tinfo(t)
            if info is None or info[1] != gap:
                row[2] += _tensor_bytes(t)
        for t in outputs:
            info = self._info.get(t)
            if info is not None:
                info[1], info[2], info[3] = gap, _tensor_bytes(t), False

    def _fusion_summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (phase, _), (ops, nbytes, bytes_in, bytes_out) in self._gaps.items():
            d = out.setdefault(phase, {"gaps": 0, "ops": 0, "bytes": 0, "fused_bytes": 0})
            d["gaps"] += 1
            d["ops"] += ops
            d["bytes"] += nbytes
            d["fused_bytes"] += min(nbytes, bytes_in + bytes_out)
        return out


def _virtual_bytes(t: torch.Tensor, low: bool) -> int:
    """Bytes of ``t`` as it would be under autocast: 2 per element when 16-bit, else its own size."""
    if not t.is_floating_point():
        return _tensor_bytes(t)
    size = 2 if low else 8 if t.dtype == torch.float64 else 4
    try:
        elems = min(t.numel(), t.untyped_storage().nbytes() // max(t.element_size(), 1))
    except (RuntimeError, NotImplementedError, TypeError):
        elems = t.numel()
    return elems * size


def _aliases_only(inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> bool:
    """True when every output shares a storage with some input (``_unsafe_view``, ``alias``)."""
    in_keys = {_storage_key(t) for t in inputs}
    in_keys.discard(None)
    return bool(in_keys) and all(_storage_key(t) in in_keys for t in outputs)
