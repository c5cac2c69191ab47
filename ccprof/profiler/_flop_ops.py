"""One dispatched aten op as the FLOP pass records it: its name, the schema arguments the cost
model reads, its tensors and the bytes they move, its dtype and the module it ran in.

Plus the module tracker that names modules by their dotted path. Pure helpers of ``flops.FlopPass``;
``module_names`` and ``op_name`` are public there.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.autograd.graph import register_multi_grad_hook
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._pytree import tree_flatten
from torch.utils.module_tracker import ModuleTracker

from ccprof.artefacts.vocab import dtype_name

_LOW = (torch.bfloat16, torch.float16)


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
