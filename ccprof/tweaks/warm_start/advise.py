"""warm_start: load pretrained embedding vectors and freeze them.

Preconditions checked before it claims pretrained vectors exist: a Hugging Face model's embedding
table must have the shape of a published checkpoint's of its family (vocabulary x hidden size,
``ccprof.advisors.families.published_match``); a custom model's must have a published
checkpoint's table shape, or the width of published word vectors (50/100/200/300). An embedding tied to the output layer (GPT-2's ``wte`` is ``lm_head``) freezes that layer
too: the advice says so, with its share of the parameters, and projects it (the head's weight
gradient goes as well).
"""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import clamp, fmt_bytes, fmt_num, fmt_pct, ledger, make_advice, recost, turn_on
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.advisors.families import published_match, published_table
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import WarmStartOptions
from ccprof.hardware.edits import freeze_weights

__all__ = ["advise_warm_start", "project_warm_start", "tied_to"]

SNIPPET = """
emb = model.{name}
emb.weight.data.copy_(torch.load("vectors.pt"))   # {source}
emb.weight.requires_grad_(False)
optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=lr)
# ccprof apply -t warm_start --option embeddings_path=vectors.pt --option embedding_module={name}
"""


# Widths of published word vectors: GloVe 50/100/200/300 (Pennington et al., EMNLP 2014),
# word2vec 300 (Mikolov et al., 2013, the GoogleNews vectors), fastText 300 (Bojanowski et al., TACL 2017).
WORD_VECTOR_DIMS = (50, 100, 200, 300)
WORD_VECTOR_SOURCES = ["Pennington et al., GloVe (EMNLP 2014): 50-, 100-, 200- and 300-d vectors",
                       "Bojanowski et al., Enriching Word Vectors with Subword Information (TACL 2017): fastText 300-d"]


def tied_to(profile: Profile, embedding: str) -> list[str]:
    """The other names of the embedding's weight (``["lm_head.weight"]`` for GPT-2's ``transformer.wte``)."""
    weight = f"{embedding}.weight"
    for group in profile.model.tied_params:
        if weight in group:
            return [n for n in group if n != weight]
    return []


def _module(param: str) -> str:
    return param.rsplit(".", 1)[0] if "." in param else ""


def project_warm_start(profile: Profile, ctx: AdviceContext | None = None) -> dict:
    """Memory freed by freezing the trainable embeddings (their gradients at peak and optimizer
    state), and the step time saved on the target GPU: the cost model's step with their weight
    gradients gone (and those of a head tied to them) and the optimizer over the rest."""
    ctx = ctx or AdviceContext()
    led = ledger(profile)
    embs = [e for e in profile.model.embeddings if e.trainable]
    n = sum(e.params for e in embs)
    grad_frac = led.grads_at_peak / led.grads if led.grads else 0.0
    saved = int(n * (C.BYTES_FP32 * grad_frac + led.opt_bytes_per_param))
    trainable = profile.model.trainable_params or profile.model.params
    tied = {e.name: tied_to(profile, e.name) for e in embs}
    scopes = [e.name for e in embs] + [_module(t) for names in tied.values() for t in names]
    keep = 1 - n / trainable if trainable else 1.0
    rc = recost(profile, ctx, ops=freeze_weights(profile.ops, scopes, keep))
    step = rc.before
    opt_share = step.phase_s.get("optimizer", 0.0) / step.step_s if step.step_s else 0.0
    return {"embeddings": [e.name for e in embs], "embedding_params": n,
            "tied": {k: v for k, v in tied.items() if v},
            "memory_saved_bytes": saved, "peak_bytes_after": led.peak - saved,
            "step_time_saved_frac": max(0.0, rc.frac), "optimizer_share": opt_share,
            "step_s_before": step.step_s, "step_s_after": rc.after.step_s}


def _not_applicable(profile: Profile, ctx: AdviceContext, snippet: str, rationale: str, **kw) -> Advice:
    return make_advice("warm_start", "not_applicable", profile, ctx, confidence=kw.pop("confidence", "high"),
                       snippet=snippet, rationale=rationale, **kw)


def _vectors(profile: Profile, wide: list) -> tuple[str | None, str, list[str]]:
    """Where pretrained vectors of the embeddings' shape come from: (None, why not, sources) when
    nowhere; else (what to load, "", sources)."""
    m = profile.model
    if m.hf_model_type:
        match = published_match(profile, widths=("hidden_size", "vocab_size"))
        if match is None:
            return None, (f"ccprof holds no published '{m.hf_model_type}' config to take vectors of this shape "
                          "from"), []
        if not match.fits:
            return None, (f"no published '{m.hf_model_type}' checkpoint has an embedding table of this shape: the "
                          f"closest, {match.says()}, differs in {'; '.join(match.differs)}"), [match.published.source]
        return (f"the input embeddings of {match.published.id} "
                f"(`AutoModel.from_pretrained({match.published.id!r}).get_input_embeddings().weight`)", "",
                [match.published.source])
    for e in wide:
        pub = published_table(e.num_embeddings, e.dim)
        if pub is not None:
            return (f"the input embeddings of {pub.id}, whose table is {e.num_embeddings:,} x {e.dim} too "
                    f"(`AutoModel.from_pretrained({pub.id!r}).get_input_embeddings().weight`)", "", [pub.source])
    dims = sorted({e.dim for e in wide})
    if not set(dims) & set(WORD_VECTOR_DIMS):
        return None, (f"no published vectors are {'/'.join(map(str, dims))}-d: word vectors come "
                      f"{'/'.join(map(str, WORD_VECTOR_DIMS))}-d (GloVe; word2vec and fastText 300-d), and no "
                      "published checkpoint ccprof knows has a table of this shape"), WORD_VECTOR_SOURCES
    return (f"published {'/'.join(str(d) for d in dims if d in WORD_VECTOR_DIMS)}-d word vectors (GloVe, word2vec, "
            "fastText) mapped to your vocabulary", "", WORD_VECTOR_SOURCES)


@register("warm_start")
def advise_warm_start(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend pretrained, frozen embeddings when large ones train from random init and vectors
    of their shape are published."""
    m = profile.model
    s = profile.static
    embs = m.embeddings
    name = embs[0].name if embs else "embed_tokens"
    snippet = SNIPPET.format(name=name, source="pretrained vectors of this table's shape")
    if not embs:
        return _not_applicable(profile, ctx, snippet, "The model has no nn.Embedding layers to warm-start.")
    if m.pretrained or s.from_pretrained:
        return make_advice("warm_start", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=f"The embeddings come from the checkpoint ({m.loaded_from or 'from_pretrained in the script'}).")
    switch = turn_on(profile, "finetune")          # a from_pretrained behind an option this run left off
    if switch is not None:
        run = f"`{switch['command']}`" if switch["command"] else "with the option set"
        return _not_applicable(profile, ctx, switch["snippet"], (
            f"Turn on what you have: the script loads a whole pretrained model ({switch['behind']}), and this run "
            f"left it off; run it {run}. Its embeddings come with the checkpoint (see finetune): there is no "
            "separate warm start to add."), details={"turn_on": switch})
    if not any(e.trainable for e in embs):
        return make_advice("warm_start", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=f"The embeddings ({', '.join(e.name for e in embs)}) are already frozen.")
    wide = [e for e in embs if e.trainable and e.dim >= C.WARM_START_MIN_DIM]
    if not wide:
        dims = sorted({e.dim for e in embs if e.trainable})
        return _not_applicable(profile, ctx, snippet, (
            f"The trainable embeddings are {'/'.join(map(str, dims))}-dimensional; published "
            f"vectors to start from are {C.WARM_START_MIN_DIM}-d and wider (GloVe 50-300, "
            "word2vec and fastText 300), so there is nothing of that width to load."))
    shapes = ", ".join(f"{e.name} {e.num_embeddings:,} x {e.dim}" for e in wide)
    source, why_not, vec_sources = _vectors(profile, wide)
    if source is None:
        return _not_applicable(profile, ctx, snippet, (
            f"The embeddings ({shapes}) train from random init, but {why_not}. Freezing them without such vectors "
            "would fix them at their random values; train them, or give vectors of this shape "
            "(--option embeddings_path=...)."), sources=vec_sources)
    snippet = SNIPPET.format(name=name, source=source.split(" (`")[0])
    pr = project_warm_start(profile, ctx)
    share = pr["embedding_params"] / m.params if m.params else 0.0
    if share < C.WARM_START_EMBED_SHARE_MIN:
        return _not_applicable(profile, ctx, snippet, (
            f"Trainable embeddings hold {fmt_pct(share)} of the parameters (below "
            f"{fmt_pct(C.WARM_START_EMBED_SHARE_MIN)}): little to gain."), confidence="medium", details=pr)
    led = ledger(profile)
    run_frac = ctx.option("warm_start", "run_frac")
    frac = clamp(run_frac + (1 - run_frac) * pr["step_time_saved_frac"])
    tied_text, tied_assumption = "", []
    if pr["tied"]:
        parts = [f"{e}.weight is the same tensor as {', '.join(t)}" for e, t in pr["tied"].items()]
        tied_params = sum(e.params for e in embs if e.name in pr["tied"])
        tied_text = (f" Tied weights: {'; '.join(parts)}, so freezing the embedding freezes the output layer too "
                     f"({fmt_num(tied_params)} parameters, {fmt_pct(tied_params / m.params if m.params else 0)} of "
                     "the model, stop learning in both places); the projection drops that layer's weight gradient "
                     "as well.")
        tied_assumption = ["An output layer tied to pretrained, frozen vectors predicts as well as a trained one "
                           "(unverified; untie it, or keep the embedding trainable, if quality drops)."]
    rationale = (f"{', '.join(pr['embeddings'])} train from random init and hold {fmt_num(pr['embedding_params'])} "
                 f"parameters ({fmt_pct(share)} of the model); vectors of that shape: {source}. Freezing them drops "
                 f"their gradients and optimizer state ({fmt_bytes(pr['memory_saved_bytes'])}; {led.note}): peak "
                 f"{fmt_bytes(led.peak)} -> {fmt_bytes(pr['peak_bytes_after'])}.{tied_text} On the target GPU the "
                 f"step saves {fmt_pct(pr['step_time_saved_frac'])} (the optimizer is "
                 f"{fmt_pct(pr['optimizer_share'])} of it), and the run skips the early steps spent learning "
                 f"embeddings, taken as {fmt_pct(run_frac)} of the run: {fmt_pct(frac)} of the run's time in all.")
    return make_advice("warm_start", "recommended", profile, ctx, confidence="low",
                       time_saved_frac=frac, memory_saved_bytes=pr["memory_saved_bytes"],
                       peak_bytes_after=pr["peak_bytes_after"], rationale=rationale, snippet=snippet,
                       assumptions=[f"Early-epoch compute saved: {fmt_pct(run_frac)} of the run (ccprof assumption, "
                                    "unverified; --option warm_start.run_frac).",
                                    f"Vectors of the embeddings' shape are loaded first: {source}; ccprof applies it "
                                    "only with --option embeddings_path (a torch.save'd tensor of that shape).",
                                    *tied_assumption],
                       sources=["Rajbhandari et al., ZeRO (SC 2020): fp32 Adam 16 bytes/param (4 weights + 4 grads + 8 state)",
                                *vec_sources],
                       details=pr, options=WarmStartOptions(embeddings=pr["embeddings"]))
