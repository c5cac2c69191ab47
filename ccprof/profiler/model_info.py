"""What the trained model is: sizes, dtypes, the module tree with its measured costs,
repeated blocks (what checkpointing wraps), embeddings and Linear layers (what LoRA,
pruning and quantization target), and the Hugging Face facts when there are any.

``describe_model`` reads live modules only (it runs nothing); the per-module FLOPs and
activation bytes come from ``FlopPass`` and ``MemoryLedger`` and are merged in by name.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch

from ccprof.artefacts.profile import Embedding, ModelInfo, ModuleStat, RepeatedBlock
from ccprof.artefacts.vocab import dtype_name
from ccprof.profiler.flops import module_names

__all__ = ["describe_model", "repeated_blocks", "linear_names", "HF_CONFIG_KEYS"]

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


def repeated_blocks(roots: dict[str, torch.nn.Module]) -> list[RepeatedBlock]:
    """Containers (``ModuleList`` / ``Sequential``) holding >= 2 identical blocks.

    Identical means same class and same parameter names and shapes; blocks without
    parameters (activations, dropout) do not count. For a mixed container the largest
    group of identical children is reported. Largest total parameters first.

    Example: a Llama gives ``RepeatedBlock("model.layers", "LlamaDecoderLayer", 32, ...)``.
    """
    names = module_names(roots)
    found = []
    for mod, name in names.items():
        if not isinstance(mod, (torch.nn.ModuleList, torch.nn.Sequential)):
            continue
        children = list(mod.named_children())
        if len(children) < 2:
            continue
        groups: dict[tuple, list[tuple[str, torch.nn.Module]]] = {}
        for child_name, child in children:
            groups.setdefault(_signature(child), []).append((child_name, child))
        best = max(groups.values(), key=len)
        params_each = sum(p.numel() for p in best[0][1].parameters())
        if len(best) < 2 or params_each == 0:
            continue
        found.append(RepeatedBlock(
            container=name,
            class_=type(best[0][1]).__name__,
            count=len(best),
            params_each=params_each,
            names=[f"{name}.{n}" if name else n for n, _ in best],
        ))
    found.sort(key=lambda b: -b.count * b.params_each)
    return found


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
                   op_bytes_by_module: dict[str, int] | None = None) -> ModelInfo:
    """Describe the trained model(s) as a ``ModelInfo``.

    Args:
        roots: prefix -> trained root module (one root: prefix ""); module names are
            dotted paths under that prefix, as in ``FlopPass`` and ``MemoryLedger``.
        flops_by_module: ``Flops.by_module`` (forward + backward, one step);
        forward_flops_by_module: ``FlopPass.forward_by_module``;
        activation_bytes_by_module: the second value ``MemoryLedger.stop()`` returns;
        op_bytes_by_module: ``FlopPass.bytes_by_module`` (bytes the module's ops move).

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
    )
