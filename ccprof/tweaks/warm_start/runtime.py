"""warm_start: load given vectors into the token embedding and stop training it.

The token embedding is the HF model's ``get_input_embeddings()``, else the ``nn.Embedding``
with the most rows (positional tables are left alone). Embeddings are frozen only with vectors
to load (a tensor, or ``vectors_path``: a ``torch.save``d one): freezing randomly initialised
ones would fix them at noise, so without vectors nothing is applied and the reason says what to
give. A weight tied to an output head is frozen there too; the result says so.
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
                     names: list[str] | None = None, freeze_embeddings: bool = WarmStartOptions().value("freeze"),
                     vectors_path: str | None = None, embedding_module: str | None = None) -> Applied:
    """Copy pretrained vectors into the embedding table(s) and freeze them.

    Inputs: ``vectors`` a (num_embeddings, dim) tensor for the token embedding, or a dict
    {module name: tensor}; or ``vectors_path``, a file ``torch.load`` reads as such a tensor (into
    ``embedding_module`` when given); ``names`` the embeddings to treat (default: the token
    embedding); ``freeze_embeddings``. Every embedding to freeze needs vectors: without them
    nothing changes and the reason names what to give. Output: Applied (trainable elements
    before/after). Example: ``apply_warm_start(RunObjects(model, [opt]), vectors=glove_rows)``.
    """
    model = objs.model
    if vectors is None and vectors_path:
        try:
            vectors = torch.load(vectors_path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as e:
            return not_applied(TWEAK, f"cannot load vectors from {vectors_path!r}: {e}")
        if not isinstance(vectors, (torch.Tensor, dict)):
            return not_applied(TWEAK, f"{vectors_path!r} holds a {type(vectors).__name__}, not a tensor of vectors")
        if embedding_module and isinstance(vectors, torch.Tensor):
            vectors = {embedding_module: vectors}
    if isinstance(vectors, dict):
        names = list(vectors)
    token = _token_embeddings(model)
    names = names or token
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
    # one tensor goes into the token embedding (the table pretrained vectors exist for)
    into = next((n for n in token if n in mods), names[0])
    table = vectors if isinstance(vectors, dict) else ({into: vectors} if vectors is not None else {})
    for n, v in table.items():
        if tuple(v.shape) != tuple(mods[n].weight.shape):
            return not_applied(TWEAK, f"vectors for {n} have shape {tuple(v.shape)}, the table is "
                               f"{tuple(mods[n].weight.shape)}")
    if not table and all(not m.weight.requires_grad for m in mods.values()):
        return not_applied(TWEAK, f"{', '.join(names)} already frozen and no vectors given", already=True)
    if not table and not freeze_embeddings:
        return not_applied(TWEAK, "nothing to do: no vectors and freeze_embeddings=False")
    if freeze_embeddings and not table:
        shapes = ", ".join(f"{n} {tuple(m.weight.shape)}" for n, m in mods.items() if m.weight.requires_grad)
        return not_applied(TWEAK, f"no pretrained vectors for {shapes}: freezing them would fix randomly "
                           "initialised values. Give the vectors: --option embeddings_path=<a torch.save'd tensor of "
                           "that shape> (and --option embedding_module=<its name> for another table)")

    before = trainable_elems(model)
    changes = []
    left = [n for n in names if n not in table]
    if left:
        changes.append(f"left {', '.join(left)} training: no vectors given for it")
    names = [n for n in names if n in table]
    mods = {n: mods[n] for n in names}
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
    return Applied(TWEAK, True, f"warm-started {', '.join(names)}", changes,
                   details={"trainable_before": before, "trainable_after": after, "embeddings": names})
