"""What the trained model is: sizes, dtypes, the module tree with its measured costs,
repeated blocks (what checkpointing wraps), embeddings and Linear layers (what LoRA,
pruning and quantization target), and the Hugging Face facts when there are any.

``describe_model`` reads live modules only (it runs nothing); the per-module FLOPs and
activation bytes come from ``FlopPass`` and ``MemoryLedger`` and are merged in by name.
"""
from __future__ import annotations

import types
import warnings
from collections import deque
from typing import Any, Iterable

import torch

from ccprof.artefacts.profile import Embedding, ModelInfo, ModuleStat, RepeatedBlock
from ccprof.artefacts.vocab import dtype_name
from ccprof.profiler.flops import module_names

__all__ = ["describe_model", "repeated_blocks", "linear_names", "reached_roots", "tied_params", "HF_CONFIG_KEYS"]

# Config keys worth carrying into the profile (scalars only); the rest stays with the model.
HF_CONFIG_KEYS = (
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
    "max_position_embeddings", "hidden_act", "tie_word_embeddings", "use_cache",
    "n_embd", "n_layer", "n_head", "n_positions", "n_inner", "d_model", "num_layers",
    "num_heads", "d_ff", "encoder_layers", "decoder_layers", "image_size", "patch_size",
    "num_labels", "dtype", "rope_theta", "sliding_window",
)


def _unique_params(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return list(module.parameters())        # parameters() already drops duplicates (ties)


def _is_linear(mod: torch.nn.Module) -> bool:
    if isinstance(mod, torch.nn.Linear):
        return True
    cls = type(mod)
    # transformers' Conv1D (GPT-2 family) is a Linear with a transposed weight
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")


def linear_names(roots: dict[str, torch.nn.Module]) -> list[str]:
    """Dotted names of every Linear layer (``nn.Linear`` and transformers' ``Conv1D``)."""
    return [name for mod, name in module_names(roots).items() if _is_linear(mod)]


def _signature(mod: torch.nn.Module) -> tuple:
    return (type(mod), tuple((n, tuple(p.shape)) for n, p in mod.named_parameters()))


def _group_key(mod: torch.nn.Module) -> tuple:
    """What makes two children of a container the same block: for a block built of modules
    (a ResNet ``BasicBlock``, a ``LlamaDecoderLayer``) its class, so a stage's first block that
    changes the width and downsamples is one of the stage's blocks (a plain ``Sequential``: the
    classes of its children); for a leaf module (a ``Linear``) its class and parameter shapes,
    so an MLP's differing layers are not."""
    if next(mod.children(), None) is None:
        return _signature(mod)
    if type(mod) in (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict):
        # a plain container says nothing by its class: its children's classes, in order, do
        return (type(mod), tuple(type(c) for c in mod.children()))
    return (type(mod),)


def _inside(name: str, members: list[str]) -> bool:
    return any(name.startswith(m + ".") for m in members)


def repeated_blocks(roots: dict[str, torch.nn.Module]) -> list[RepeatedBlock]:
    """Containers (``ModuleList`` / ``Sequential``) holding >= 2 blocks of one kind.

    One kind means the same class for blocks built of modules, and the same class and
    parameter shapes for leaf modules (``_group_key``); blocks without parameters
    (activations, dropout) do not count. For a mixed container the largest group is reported;
    ``params_each`` is the blocks' mean when their sizes differ (a ResNet stage's first block
    downsamples). Every stage of a ResNet is found: ``layer2`` = [BasicBlock(64 -> 128,
    downsample), BasicBlock(128)] is two blocks, as torchvision's ``resnet18`` builds 2 per stage.
    Where blocks of differing sizes hold a container of identical blocks (ConvNeXt's stages
    of identical blocks) the inner, identical ones are reported; a group of differing blocks
    inside another block found is left out (its blocks are counted there). Largest total
    parameters first.

    Example: a Llama gives ``RepeatedBlock("model.layers", "LlamaDecoderLayer", 32, ...)``.
    """
    names = module_names(roots)
    found: list[tuple[RepeatedBlock, bool]] = []          # (block, sizes differ)
    for mod, name in names.items():
        if not isinstance(mod, (torch.nn.ModuleList, torch.nn.Sequential)):
            continue
        children = list(mod.named_children())
        if len(children) < 2:
            continue
        groups: dict[tuple, list[tuple[str, torch.nn.Module]]] = {}
        for child_name, child in children:
            if next(child.parameters(), None) is None:
                continue
            groups.setdefault(_group_key(child), []).append((child_name, child))
        if not groups:
            continue
        best = max(groups.values(), key=len)
        if len(best) < 2:
            continue
        sizes = [sum(p.numel() for p in child.parameters()) for _, child in best]
        found.append((RepeatedBlock(
            container=name,
            class_=type(best[0][1]).__name__,
            count=len(best),
            params_each=round(sum(sizes) / len(sizes)),
            names=[f"{name}.{n}" if name else n for n, _ in best],
        ), len({_signature(c) for _, c in best}) > 1))
    same = [b for b, mixed in found if not mixed]
    kept = [(b, mixed) for b, mixed in found
            if not (mixed and any(_inside(o.container, b.names) for o in same))]
    out = [b for b, mixed in kept
           if not (mixed and any(_inside(b.container, o.names) for o, _ in kept if o is not b))]
    out.sort(key=lambda b: -b.count * b.params_each)
    return out


# Bounds on the walk that finds modules held in plain lists and dicts (a cost bound, not a
# figure): a dataset kept as a Python list is not read past its first items.
_REACH_MAX_OBJECTS = 50_000
_REACH_MAX_ITEMS = 1_000
_REACH_SKIP_ATTRS = frozenset({"_parameters", "_buffers", "_modules"})
_REACH_SKIP_PACKAGES = ("torch", "numpy", "pandas", "transformers", "datasets", "lightning", "pytorch_lightning")


def _plain_object(v: Any) -> bool:
    """A user object worth reading attributes of (a trainer, an agent, a config holder)."""
    if isinstance(v, (type, types.ModuleType, types.FunctionType, types.MethodType, torch.Tensor)):
        return False
    mod = type(v).__module__ or ""
    return hasattr(v, "__dict__") and not mod.startswith(_REACH_SKIP_PACKAGES)


def _walk_modules(starts: Iterable[Any]) -> tuple[list[torch.nn.Module], dict[int, tuple[torch.nn.Module, str]]]:
    """Modules reachable from ``starts`` through registered children, plain lists, tuples and
    dicts (a module's or a user object's), and user objects' attributes; with, for each module
    first reached below another module, (that module, the dotted path from it)."""
    found: dict[int, torch.nn.Module] = {}
    paths: dict[int, tuple[torch.nn.Module, str]] = {}
    seen: set[int] = set()
    queue: deque[tuple[Any, torch.nn.Module | None, str]] = deque((obj, None, "") for obj in starts)
    while queue and len(seen) < _REACH_MAX_OBJECTS:
        obj, anchor, rel = queue.popleft()
        if isinstance(obj, torch.nn.Module):
            if anchor is not None and anchor is not obj:
                paths.setdefault(id(obj), (anchor, rel))
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            found[id(obj)] = obj
            for name, child in obj._modules.items():
                if child is not None:
                    queue.append((child, obj, name))
            for name, value in vars(obj).items():
                if name not in _REACH_SKIP_ATTRS and isinstance(value, (list, tuple, dict)):
                    queue.append((value, obj, name))
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            items = ((str(i), v) for i, v in enumerate(obj[:_REACH_MAX_ITEMS]))
        elif isinstance(obj, dict):
            items = ((str(k), v) for k, v in list(obj.items())[:_REACH_MAX_ITEMS] if isinstance(k, (str, int)))
        elif _plain_object(obj):
            try:
                items = ((k, v) for k, v in list(vars(obj).items())[:_REACH_MAX_ITEMS])
            except TypeError:
                continue
            anchor, rel = None, ""          # a plain object's attribute is no module path
        else:
            continue
        for key, v in items:
            if isinstance(v, (torch.nn.Module, list, tuple, dict)) or _plain_object(v):
                queue.append((v, anchor, f"{rel}.{key}" if rel else key))
    return list(found.values()), paths


def reached_roots(roots: list[torch.nn.Module], starts: Iterable[Any],
                  trained_ids: set[int]) -> dict[str, torch.nn.Module]:
    """Roots and the modules that train beside them without being reached through them.

    A script may keep layers in a plain Python list (``self.layers = [Layer(...) ...]``, not
    an ``nn.ModuleList``), each with its own optimizer, and call them as ``layer.forward(x)``:
    no root's ``parameters()`` holds them. This walks ``roots`` and ``starts`` (the live frames'
    variables) through registered children, plain lists, dicts and user objects' attributes,
    and keeps the outermost modules holding a parameter in ``trained_ids`` (the optimizers'
    param_groups) that no root holds.

    Args:
        roots: the modules whose forward the profiler saw called at the top level;
        starts: objects to walk from (frame locals and globals);
        trained_ids: ``id()`` of every parameter in an optimizer's param_groups.

    Returns:
        {} when the roots hold every trained parameter; else prefix -> module for the roots and
        the modules found, named by their path where a module holds them (``layers.0``, as an
        ``nn.ModuleList`` would name them), else by class; a lone root without a path keeps "".

    Example: Forward-Forward's ``Net.layers = [Layer(784, 500), Layer(500, 500)]`` gives
    ``{"layers.0": Layer, "layers.1": Layer}``.
    """
    covered = {id(p) for r in roots for p in r.parameters()}
    if not (trained_ids - covered):
        return {}
    modules, paths = _walk_modules([*roots, *starts])
    in_roots = {id(m) for r in roots for m in r.modules()}

    def holds_trained(m: torch.nn.Module) -> bool:
        return any(id(p) in trained_ids and id(p) not in covered for p in m.parameters())

    cands = [m for m in modules if id(m) not in in_roots and holds_trained(m)]
    # a candidate that holds a root (a model whose encoder alone was called) gives way to its
    # children, so no module is counted twice
    split: list[torch.nn.Module] = []
    while cands:
        m = cands.pop(0)
        if any(id(sub) in {id(r) for r in roots} for sub in m.modules()):
            cands += [c for c in m.children() if id(c) not in in_roots and holds_trained(c)]
        else:
            split.append(m)
    inner = {id(sub) for m in split for sub in m.modules() if sub is not m}
    extras = [m for m in split if id(m) not in inner]
    if not extras:
        return {}
    named_ids: dict[int, str] = {}

    def path(m: torch.nn.Module, depth: int = 0) -> str | None:
        if id(m) in named_ids:
            return named_ids[id(m)]
        if id(m) not in paths or depth > 32:
            return None
        anchor, rel = paths[id(m)]
        above = path(anchor, depth + 1)
        return f"{above}.{rel}" if above else rel

    members = list(roots) + [m for m in extras if all(m is not r for r in roots)]
    pathless = [m for m in members if id(m) not in paths]
    for m in pathless:                  # named first: the paths below them start from their name
        named_ids[id(m)] = "" if len(pathless) == 1 and roots and pathless[0] is roots[0] else type(m).__name__
    out: dict[str, torch.nn.Module] = {}
    for m in members:
        name = named_ids[id(m)] if id(m) in named_ids else (path(m) or type(m).__name__)
        base, i = name, 1
        while name in out:
            name, i = f"{base}_{i}", i + 1
        out[name] = m
    return out


def _embeddings(roots: dict[str, torch.nn.Module]) -> list[Embedding]:
    out = []
    for mod, name in module_names(roots).items():
        if isinstance(mod, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
            out.append(Embedding(
                name=name,
                num_embeddings=int(mod.num_embeddings),
                dim=int(mod.embedding_dim),
                params=int(mod.weight.numel()),
                trainable=bool(mod.weight.requires_grad),
            ))
    return out


def tied_params(roots: dict[str, torch.nn.Module]) -> list[list[str]]:
    """Groups of dotted names that reach one Parameter object (tied weights), in definition order.

    Example: a GPT-2 LM head model gives ``[["transformer.wte.weight", "lm_head.weight"]]``.
    """
    names: dict[int, list[str]] = {}
    for prefix, root in roots.items():
        for rel, p in root.named_parameters(remove_duplicate=False):
            name = f"{prefix}.{rel}" if prefix else rel
            group = names.setdefault(id(p), [])
            if name not in group:
                group.append(name)
    return [group for group in names.values() if len(group) > 1]


def _hf_model(roots: dict[str, torch.nn.Module]) -> torch.nn.Module | None:
    """The outermost module carrying a Hugging Face ``config.model_type``."""
    for root in roots.values():
        for mod in root.modules():          # pre-order: outermost first
            if isinstance(getattr(getattr(mod, "config", None), "model_type", None), str):
                return mod
    return None


def _scalar(v: Any) -> Any:
    if isinstance(v, torch.dtype):
        return dtype_name(v)
    if isinstance(v, (bool, int, float, str)):
        return v
    return None


def _hf_config(config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in HF_CONFIG_KEYS:
        value = _scalar(getattr(config, key, None))
        if value is not None:
            out[key] = value
    attn = _scalar(getattr(config, "_attn_implementation", None))
    if attn is not None:
        out["attn_implementation"] = attn
    archs = getattr(config, "architectures", None)
    if isinstance(archs, (list, tuple)) and archs:
        out["architectures"] = ",".join(str(a) for a in archs)
    return out


def _gradient_checkpointing(roots: dict[str, torch.nn.Module]) -> bool:
    for root in roots.values():
        # transformers sets ``gradient_checkpointing = True`` on each module that supports it
        if any(getattr(m, "gradient_checkpointing", False) is True for m in root.modules()):
            return True
        with warnings.catch_warnings():     # transformers 5 renamed the property (FutureWarning)
            warnings.simplefilter("ignore")
            for attr in ("is_activation_checkpointing", "is_gradient_checkpointing"):
                if getattr(root, attr, False) is True:
                    return True
    return False


def describe_model(roots: dict[str, torch.nn.Module],
                   flops_by_module: dict[str, int] | None = None,
                   forward_flops_by_module: dict[str, int] | None = None,
                   activation_bytes_by_module: dict[str, int] | None = None,
                   op_bytes_by_module: dict[str, int] | None = None,
                   loose_params: Iterable[torch.Tensor] = ()) -> ModelInfo:
    """Describe the trained model(s) as a ``ModelInfo``.

    Args:
        roots: prefix -> trained root module (one root: prefix ""); module names are
            dotted paths under that prefix, as in ``FlopPass`` and ``MemoryLedger``.
        flops_by_module: ``Flops.by_module`` (forward + backward, one step);
        forward_flops_by_module: ``FlopPass.forward_by_module``;
        activation_bytes_by_module: the second value ``MemoryLedger.stop()`` returns;
        op_bytes_by_module: ``FlopPass.bytes_by_module`` (bytes the module's ops move);
        loose_params: parameters an optimizer trains that no module holds (bare tensors), counted
            in ``params`` / ``trainable_params`` / ``param_dtypes``.

    Returns:
        ``ModelInfo`` with counts over distinct parameters (tied weights once), the module
        tree in definition order, repeated blocks, embeddings, Linear names and, for a
        Hugging Face model, ``hf_model_type``, a scalar ``hf_config`` subset and whether
        gradient checkpointing is on. ``pretrained`` / ``loaded_from`` are left for the
        harness, which sees the loading calls.

    Example:
        >>> info = describe_model({"": torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))})
        >>> info.params, info.repeated_blocks[0].count
        (40, 2)
    """
    flops_by_module = flops_by_module or {}
    forward_flops_by_module = forward_flops_by_module or {}
    activation_bytes_by_module = activation_bytes_by_module or {}
    op_bytes_by_module = op_bytes_by_module or {}
    params: dict[int, torch.nn.Parameter] = {}
    for root in roots.values():
        for p in root.parameters():
            params.setdefault(id(p), p)
    for p in loose_params:
        params.setdefault(id(p), p)
    dtypes: dict[str, int] = {}
    for p in params.values():
        key = dtype_name(p.dtype)
        dtypes[key] = dtypes.get(key, 0) + p.numel()
    param_storages = set()
    for p in params.values():
        try:
            param_storages.add(p.untyped_storage()._cdata)
        except (RuntimeError, NotImplementedError, TypeError):
            pass
    buffers_bytes, buffer_storages = 0, set()
    for root in roots.values():
        for b in root.buffers():
            try:
                st = b.untyped_storage()
            except (RuntimeError, NotImplementedError, TypeError):
                continue
            if st._cdata in param_storages or st._cdata in buffer_storages:
                continue
            buffer_storages.add(st._cdata)
            buffers_bytes += st.nbytes()

    modules, seen = [], set()
    for prefix, root in roots.items():
        for rel, mod in root.named_modules():
            if mod in seen:
                continue
            seen.add(mod)
            name = f"{prefix}.{rel}" if prefix and rel else (prefix or rel)
            own = _unique_params(mod)
            modules.append(ModuleStat(
                name=name,
                class_=type(mod).__name__,
                depth=0 if rel == "" else rel.count(".") + 1,
                params=sum(p.numel() for p in own),
                trainable_params=sum(p.numel() for p in own if p.requires_grad),
                flops=int(flops_by_module.get(name, 0)),
                forward_flops=int(forward_flops_by_module.get(name, 0)),
                activation_bytes=int(activation_bytes_by_module.get(name, 0)),
                op_bytes=int(op_bytes_by_module.get(name, 0)),
            ))

    hf = _hf_model(roots)
    first = next(iter(roots.values()), None)
    return ModelInfo(
        class_=type(first).__name__ if first is not None else "",
        params=sum(p.numel() for p in params.values()),
        trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
        param_dtypes=dict(sorted(dtypes.items(), key=lambda kv: -kv[1])),
        buffers_bytes=buffers_bytes,
        modules=modules,
        repeated_blocks=repeated_blocks(roots),
        embeddings=_embeddings(roots),
        linear_names=linear_names(roots),
        hf_model_type=hf.config.model_type if hf is not None else None,
        hf_config=_hf_config(hf.config) if hf is not None else {},
        gradient_checkpointing=_gradient_checkpointing(roots),
        roots=[type(r).__name__ for r in roots.values()],
        tied_params=tied_params(roots),
    )
