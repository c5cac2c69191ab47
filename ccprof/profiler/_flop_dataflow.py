"""The dataflow tags the FLOP pass follows through a step: how each op would run under CUDA
autocast, and which non-matmul ops torch.compile would fuse between two matmuls.

Every tensor produced in the step carries ``[would-be-16-bit, gap key, bytes, escaped]`` in
``_info``: the virtual 16-bit tag says what dtype it would have under ``torch.autocast("cuda")``
(with the casts autocast would add recorded as op rows), the gap key which run of non-matmul
ops produced it (a tensor escapes its gap when an op outside it reads it). ``FlopPass`` sets
the state below in ``start()``; this class only reads and updates it.
"""
from __future__ import annotations

import torch
from torch.utils.weak import WeakIdKeyDictionary

from ccprof.artefacts.vocab import MODEL_PHASES
from ccprof.profiler._flop_ops import _LOW, _base, _tensor_bytes, _virtual_bytes
from ccprof.profiler.autocast_ops import autocast_class

_GAP_PHASES = MODEL_PHASES


class _DataflowTags:
    """Autocast and fusion-gap tracking, a base of ``FlopPass`` (which owns the state)."""

    _info: WeakIdKeyDictionary              # tensor -> [would-be-16-bit, gap key, bytes, escaped]
    _param_ids: set[int]                    # ids of the roots' parameters
    _param_copies: WeakIdKeyDictionary      # dtype copies of parameters (autocast's weight casts)
    _cast_seen: set[int]                    # parameters whose autocast copy is already counted
    _ops: dict[tuple, list[int]]            # op row key -> [count, flops, read, written, autocast bytes]
    _gaps: dict[tuple[str, int], list[int]]     # (phase, index) -> [ops, bytes, bytes in, bytes out]
    _gap_index: dict[str, int]              # phase -> index of its current gap
    _gap_open: dict[str, bool]              # phase -> whether its current gap is still open
    _row_modules: dict[tuple, dict[str, int]]   # op row key -> owning module -> calls

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

    # -- autocast: how the op would run under torch.autocast("cuda") ----------------------
    def _low(self, t: torch.Tensor) -> bool:
        info = self._tinfo(t)
        return info[0] if info is not None else t.dtype in _LOW

    def _autocast(self, name: str, func, phase: str, inputs: list, outputs: list,
                  owner: str | None = None) -> tuple[str, int]:
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
                        self._add_cast(t, to_low=True, owner=owner)
        elif cls == "fp32":
            out_low = False
            if phase == "forward":
                for t in floats:
                    if self._low(t):
                        self._add_cast(t, to_low=False, owner=owner)
        elif cls == "explicit" or not floats:
            out_low = None                            # the output's own dtype decides
        elif func._schema.is_mutable and inputs:
            out_low = self._low(inputs[0])            # in place: the mutated tensor keeps its dtype
        else:
            out_low = all(self._low(t) for t in floats)
        nbytes = 0
        as32 = bool(floats) and all(t.dtype == torch.float64 for t in floats)   # a float64 op: as float32
        for t in inputs:
            if not t.is_floating_point():
                low = False
            elif cls in ("lower", "fp32"):
                low = cls == "lower"                  # reads the copy autocast made
            else:
                low = self._low(t)
            nbytes += _virtual_bytes(t, low, as32)
        for t in outputs:
            low = (t.dtype in _LOW) if out_low is None or not t.is_floating_point() else out_low
            nbytes += _virtual_bytes(t, low, as32)
            info = self._info.get(t)
            if info is None:
                self._info[t] = [low, None, _tensor_bytes(t), False]
            else:
                info[0] = low
        computes_low = out_low if out_low is not None else any(t.dtype in _LOW for t in outputs)
        return ("low" if computes_low else "fp32"), nbytes

    def _add_cast(self, t: torch.Tensor, to_low: bool, owner: str | None = None) -> None:
        """Record the dtype copy autocast would add for ``t`` (and its backward twin), the module
        ``owner``'s: the module of the op that needs it."""
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
            # a float64 tensor's casts are labelled float64: autocast does not make them (float64 is not
            # eligible); they are what autocast would add once the model is float32
            src = ("float64" if t.dtype == torch.float64 else
                   "float32" if to_low == (phase == "forward") else "bfloat16")
            key = ("aten._to_copy", src, phase,
                   (tuple(t.shape),), (tuple(t.shape),), (0, 1) if self._is_param(t) else (), "", (),
                   "cast", False)
            row = self._ops.get(key)
            if row is None:
                row = self._ops[key] = [0, 0, 0, 0, 0]
            row[0] += 1
            row[4] += read + written
            if owner is not None:
                calls = self._row_modules.setdefault(key, {})
                calls[owner] = calls.get(owner, 0) + 1

    # -- fusion gaps: what torch.compile would fuse -----------------------------------------
    def _track_gap(self, name: str, phase: str, inputs: list, outputs: list, *, in_model: bool = True) -> None:
        """Group the non-matmul ops between two matmuls of a phase, with the bytes entering and
        leaving each group (a tensor leaves when a later op outside the group reads it).

        Only ops inside the model's modules group (``in_model``): ``torch.compile(model)`` compiles
        the model's forward and, through AOTAutograd, its backward; a loss computed outside the
        model (``F.cross_entropy(model(x), y)``, a criterion module) stays eager and ends a group as
        a matmul does."""
        delimiter = not in_model or autocast_class(_base(name), phase == "backward") == "lower"
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
