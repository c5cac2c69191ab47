"""warm_start: load given vectors into the token embedding and stop training it.

The token embedding is the HF model's ``get_input_embeddings()``, else the ``nn.Embedding``
with the most rows (positional tables are left alone). A weight tied to an output head is
frozen there too; the result says so.
"""
from __future__ import annotations

import torch
from torch import nn

from ccprof.applier.runtime._base import Applied, RunObjects, freeze, hf_model, not_applied, register, trainable_elems
from ccprof.artefacts.tweaks import WarmStartOptions

__all__ = ["apply_warm_start"]

TWEAK = "warm_start"


def _token_embeddings(model: nn.Module) -> list[str]:
    hf = hf_model(model)
    if hf is not None:
        emb = hf.get_input_embeddings()
        for n, m in model.named_modules():
            if m is emb:
                return [n]
    embs = [(m.num_embeddings, n) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    return [max(embs)[1]] if embs else []


@register(TWEAK)
def apply_warm_start(objs: RunObjects, vectors: torch.Tensor | dict[str, torch.Tensor] | None = None,
                     names: list[str] | None = None, freeze_embeddings: bool = WarmStartOptions().value("freeze")) -> Applied:
    """Copy ``vectors`` into the embedding table(s) and freeze them.

    Inputs: ``vectors`` a (num_embeddings, dim) tensor for the token embedding, or a dict
    {module name: tensor}; ``names`` the embeddings to treat (default: the token
    embedding); ``freeze_embeddings``. Output: Applied (trainable elements before/after).
    Example: ``apply_warm_start(RunObjects(model, [opt]), vectors=glove_rows)``.
    """
    model = objs.model
    if isinstance(vectors, dict):
        names = list(vectors)
    names = names or _token_embeddings(model)
    if not names:
        return not_applied(TWEAK, f"{type(model).__name__} has no nn.Embedding to warm-start")
    mods: dict[str, nn.Module] = {}
    for n in names:
        try:
            m = model.get_submodule(n)
        except AttributeError:
            return not_applied(TWEAK, f"no embedding {n!r} in {type(model).__name__}")
        if not isinstance(getattr(m, "weight", None), torch.Tensor):
            return not_applied(TWEAK, f"{n} ({type(m).__name__}) has no weight table")
        mods[n] = m
    table = vectors if isinstance(vectors, dict) else ({names[0]: vectors} if vectors is not None else {})
    for n, v in table.items():
        if tuple(v.shape) != tuple(mods[n].weight.shape):
            return not_applied(TWEAK, f"vectors for {n} have shape {tuple(v.shape)}, the table is "
                               f"{tuple(mods[n].weight.shape)}")
    if not table and all(not m.weight.requires_grad for m in mods.values()):
        return not_applied(TWEAK, f"{', '.join(names)} already frozen and no vectors given", already=True)
    if not table and not freeze_embeddings:
        return not_applied(TWEAK, "nothing to do: no vectors and freeze_embeddings=False")

    before = trainable_elems(model)
    changes = []
    for n, v in table.items():
        with torch.no_grad():
            mods[n].weight.copy_(v.to(mods[n].weight))
        changes.append(f"loaded {tuple(v.shape)} vectors into {n}.weight")
    if freeze_embeddings:
        weights = [m.weight for m in mods.values()]
        ids = {id(w) for w in weights}
        tied = sorted({n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in ids}
                      - {f"{k}.weight" for k in mods})
        frozen = freeze(weights, objs.optimizers)
        changes.append(f"froze {', '.join(names)} ({frozen:,} elements; grads and optimizer state dropped)")
        if tied:
            changes.append(f"note: tied weight, so {', '.join(tied)} is frozen too")
    after = trainable_elems(model)
    changes.append(f"trainable elements {before:,} -> {after:,}")
    if not table:
        changes.append("no vectors given: the embeddings keep their current values")
    return Applied(TWEAK, True, f"warm-started {', '.join(names)}", changes,
                   details={"trainable_before": before, "trainable_after": after, "embeddings": names})
