"""One dispatched aten op as the FLOP pass records it: its name, the schema arguments the cost
model reads, its tensors and the bytes they move, its dtype and the module it ran in.

Plus ``ModuleOwners``, which says which module (by dotted path) owns each op, forward and
backward. Helpers of ``flops.FlopPass``; ``module_names`` and ``op_name`` are public there.
"""
from __future__ import annotations

import itertools
import os
import weakref
from typing import Any

import torch
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from ccprof.artefacts.vocab import dtype_name

_LOW = (torch.bfloat16, torch.float16)


def _base(name: str) -> str:
    """``"aten.addmm"`` -> ``"addmm"``."""
    return name.split(".", 1)[1] if name.startswith("aten.") else name


def scope_of(parents: Any) -> str:
    """The module an op ran in, for grouping: the outermost module with a block index in its
    path (``transformer.h.3.attn`` -> ``transformer.h.*``), else the deepest module, cut at two
    components. ``parents`` are the owning module and its ancestors ("Global" and the root "" are
    ignored)."""
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


def _named_args(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The op's arguments by their schema names (given, else the schema's default, else None);
    {} for a callable without a schema."""
    try:
        arguments = func._schema.arguments
    except AttributeError:
        return {}
    return {a.name: kwargs[a.name] if a.name in kwargs else args[i] if i < len(args)
            else a.default_value if a.has_default_value() else None for i, a in enumerate(arguments)}


def _schema_attrs(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The non-tensor arguments the cost model reads: conv ``groups``/``transposed``, attention ``causal``."""
    out: dict[str, Any] = {}
    for name, val in _named_args(func, args, kwargs).items():
        if name in ("groups", "transposed", "is_causal") and isinstance(val, (bool, int)):
            out["causal" if name == "is_causal" else name] = val
    return out


COLLECTIVE_NAMESPACES = ("c10d", "_c10d_functional")
# point-to-point ops (a pipeline's activations and gradients): they return a Work, no tensor
P2P_OPS = ("c10d.send", "c10d.recv_")

# the phase of a pipeline's send or receive, by the schedule's action that made it (its stage's
# get_{fwd,bwd}_{send,recv}_ops: ccprof.profiler.dryrun_pipe tags the tensor each moves). The
# schedule runs them between its stages' forward and backward calls, outside every module's and
# autograd's hooks: by the phase clock they would land in whichever phase ran last, or "other"
_P2P_PHASE = WeakIdKeyDictionary()          # a tensor's tag dies with it


def tag_p2p(tensor: torch.Tensor, phase: str) -> None:
    """``tensor`` is sent or received for a schedule's ``phase`` ("forward": activations,
    "backward": gradients); its send or receive row is booked to that phase."""
    _P2P_PHASE[tensor] = phase


def p2p_phase(tensors: list[torch.Tensor]) -> str | None:
    """The phase :func:`tag_p2p` gave the first of a send's or receive's ``tensors``; None if untagged."""
    return next((ph for t in tensors if (ph := _P2P_PHASE.get(t)) is not None), None)


def collective_attrs(func: Any, args: tuple, kwargs: dict, out: Any) -> dict[str, Any]:
    """What the cost model needs of a collective (``c10d.*``, ``_c10d_functional.*``): ``bytes``,
    the largest of its arguments' tensors and its result (the gathered buffer of an all-gather,
    the unsharded input of a reduce-scatter, the tensor of an all-reduce); ``group``, the ranks in
    its process group; ``nodes``, how many nodes they span (``LOCAL_WORLD_SIZE`` ranks a node, as
    torchrun sets it); a send or receive (``P2P_OPS``): group 2, the nodes of this rank and its peer.
    {} when the group cannot be read."""
    import torch.distributed as dist
    named = _named_args(func, args, kwargs)
    group = None
    if isinstance(named.get("process_group"), torch.ScriptObject):        # c10d.*
        from torch._C._distributed_c10d import ProcessGroup
        group = ProcessGroup.unbox(named["process_group"])
    elif isinstance(named.get("group_name"), str):                          # _c10d_functional.*
        from torch.distributed.distributed_c10d import _resolve_process_group
        group = _resolve_process_group(named["group_name"])
    if group is None or not dist.is_initialized():
        return {}
    ranks = dist.get_process_group_ranks(group)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or dist.get_world_size())
    sizes = [sum(_tensor_bytes(t) for t in tree_flatten(v)[0] if isinstance(t, torch.Tensor))
             for v in (*named.values(), out)]
    peer = named.get("dst", named.get("src"))           # the peer's rank in the group
    if str(getattr(func, "_overloadpacket", func)) in P2P_OPS and isinstance(peer, int):
        # a send or receive crosses the link between this rank and its peer: the nodes are theirs
        ranks = [dist.get_rank(), dist.get_global_rank(group, peer)]
    return {"bytes": max(sizes, default=0), "group": len(ranks),
            "nodes": len({r // max(per_node, 1) for r in ranks})}


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


class GlobalOnly:
    """Stands in for ``FlopCounterMode``'s module tracker: ``ModuleOwners`` says which module owns
    each op, so the counter keeps only its "Global" total and registers no backward hooks per call."""
    parents = frozenset({"Global"})

    def __enter__(self) -> "GlobalOnly":
        return self

    def __exit__(self, *args: Any) -> None:
        return None


_TAG = "ccprof_module"      # key in ``torch.autograd.graph.Node.metadata``
# the autograd node running now, in backward; a torch without it leaves backward work unattributed
_current_node = getattr(torch._C, "_current_autograd_node", lambda: None)
_PASS_IDS = itertools.count(1)


class ModuleOwners:
    """Which module owns each op of a step: the one whose code ran it, innermost first.

    Forward: the innermost module of ours running (modules outside the roots do not count, so a
    loss module of the script's own is left unattributed). Backward: the module whose forward
    created the autograd node that runs the op (``torch._C._current_autograd_node()``): each node
    is tagged, in the module's forward hooks, with the module that created it, by walking the graph
    from the module's inputs (nodes made before it: its caller's) and then from its outputs (new
    nodes: its own). A gradient kernel then lands on the Linear that made it, not on whichever
    module's backward hook fired last (``torch.utils.module_tracker.ModuleTracker`` keeps a module
    "in backward" until all of its inputs' gradients are in, so siblings that share an input,
    q/k/v projections or a residual and a Dropout, absorb one another's gradient GEMMs). Forward
    work re-run in backward (activation checkpointing) belongs to the module re-running it.
    ``owner()`` is ``None`` for work outside every module (the script's loss, optimizer, seeds).
    """

    def __init__(self, names: dict[torch.nn.Module, str]) -> None:
        self._names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary(names)
        self._pass = next(_PASS_IDS)
        # (module id, its name or None for a module outside the roots): forward, and re-run in backward
        self._stacks: tuple[list, list] = ([], [])

    def owner(self) -> str | None:
        """The module the op running now belongs to, or None."""
        in_bw = torch._C._current_graph_task_id() != -1
        stack = self._stacks[in_bw]
        if stack or not in_bw:
            return self._top(stack)
        node = _current_node()
        if node is None:
            return None
        tag = node.metadata.get(_TAG)
        return tag[1] if tag is not None and tag[0] == self._pass else None

    def pre(self, module: torch.nn.Module, args: Any) -> None:
        stack = self._stacks[torch._C._current_graph_task_id() != -1]
        self._tag(_tensors(args), self._top(stack))        # made before this module: its caller's
        stack.append((id(module), self._names.get(module)))

    def post(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> str | None:
        """Pop ``module`` and tag what it made. Returns its name when it was already running when
        counting started (its pre-hook never ran: a harness that starts the pass from inside the
        root's forward): the forward work counted since then with no module running is its own."""
        stack = self._stacks[torch._C._current_graph_task_id() != -1]
        name, adopted = None, None
        if any(mid == id(module) for mid, _ in stack):
            while stack:                # a module whose forward raised never popped: drop it too
                mid, name = stack.pop()
                if mid == id(module):
                    break
        elif not stack:
            name = adopted = self._names.get(module)
            self._tag(_tensors(args), None)
        outer = self._top(stack)
        self._tag(_tensors(kwargs), outer)                 # keyword inputs: the pre-hook cannot see them
        self._tag(_tensors(output), name if name is not None else outer)
        return adopted

    @staticmethod
    def _top(stack: list) -> str | None:
        for _, name in reversed(stack):
            if name is not None:
                return name
        return None

    def _tag(self, tensors: list[torch.Tensor], name: str | None) -> None:
        """Tag every autograd node reachable from ``tensors`` that this pass has not tagged yet."""
        todo = [t.grad_fn for t in tensors if t.grad_fn is not None]
        while todo:
            node = todo.pop()
            meta = node.metadata
            tag = meta.get(_TAG)
            if tag is not None and tag[0] == self._pass:
                continue
            meta[_TAG] = (self._pass, name)
            todo.extend(nxt for nxt, _ in node.next_functions if nxt is not None)


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


def _virtual_bytes(t: torch.Tensor, low: bool, as_float32: bool = False) -> int:
    """Bytes of ``t`` as it would be under autocast: 2 per element when 16-bit, else its own size.

    ``as_float32``: a float64 op's tensors at 4 bytes. Autocast leaves float64 alone
    (``is_eligible`` in aten/src/ATen/autocast_mode.h skips ``kDouble``) and the cost model keeps
    a float64 op's own dtype and bytes under autocast; its autocast bytes are the op once the
    model is float32 (the float64 -> float32 lever, then autocast).
    """
    if not t.is_floating_point():
        return _tensor_bytes(t)
    size = 2 if low else 8 if t.dtype == torch.float64 and not as_float32 else 4
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
