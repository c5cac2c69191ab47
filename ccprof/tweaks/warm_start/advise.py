"""warm_start: load pretrained embedding vectors and freeze them."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import clamp, fmt_bytes, fmt_num, fmt_pct, ledger, make_advice, recost
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import WarmStartOptions

__all__ = ["advise_warm_start", "project_warm_start"]

SNIPPET = """
emb = model.{name}
emb.weight.data.copy_(pretrained_vectors)      # e.g. from a published checkpoint of the family
emb.weight.requires_grad_(False)
optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=lr)
"""


def project_warm_start(profile: Profile, ctx: AdviceContext | None = None) -> dict:
    """Memory freed by freezing the trainable embeddings (their gradients at peak and optimizer
    state), and the optimizer time they stop taking: their share of the trainable parameters x
    the optimizer's share of the step on the target GPU (the cost model's, not this CPU's)."""
    led = ledger(profile)
    embs = [e for e in profile.model.embeddings if e.trainable]
    n = sum(e.params for e in embs)
    grad_frac = led.grads_at_peak / led.grads if led.grads else 0.0
    saved = int(n * (C.BYTES_FP32 * grad_frac + led.opt_bytes_per_param))
    trainable = profile.model.trainable_params or profile.model.params
    step = recost(profile, ctx or AdviceContext()).before
    opt_share = step.phase_s.get("optimizer", 0.0) / step.step_s if step.step_s else 0.0
    step_frac = opt_share * (n / trainable if trainable else 0.0)
    return {"embeddings": [e.name for e in embs], "embedding_params": n,
            "memory_saved_bytes": saved, "peak_bytes_after": led.peak - saved,
            "step_time_saved_frac": step_frac, "optimizer_share": opt_share}


@register("warm_start")
def advise_warm_start(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend pretrained, frozen embeddings when large ones train from random init."""
    m = profile.model
    embs = m.embeddings
    name = embs[0].name if embs else "embed_tokens"
    snippet = SNIPPET.format(name=name)
    if not embs:
        return make_advice("warm_start", "not_applicable", profile, ctx, confidence="high", snippet=snippet,
                           rationale="The model has no nn.Embedding layers to warm-start.")
    if m.pretrained or profile.static.from_pretrained:
        return make_advice("warm_start", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=f"The embeddings come from the checkpoint ({m.loaded_from or 'from_pretrained in the script'}).")
    if not any(e.trainable for e in embs):
        return make_advice("warm_start", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=f"The embeddings ({', '.join(e.name for e in embs)}) are already frozen.")
    wide = [e for e in embs if e.trainable and e.dim >= C.WARM_START_MIN_DIM]
    if not wide:
        dims = sorted({e.dim for e in embs if e.trainable})
        return make_advice("warm_start", "not_applicable", profile, ctx, confidence="high", snippet=snippet,
                           rationale=(f"The trainable embeddings are {'/'.join(map(str, dims))}-dimensional; published "
                                      f"vectors to start from are {C.WARM_START_MIN_DIM}-d and wider (GloVe 50-300, "
                                      "word2vec and fastText 300), so there is nothing of that width to load."))
    pr = project_warm_start(profile, ctx)
    share = pr["embedding_params"] / m.params if m.params else 0.0
    if share < C.WARM_START_EMBED_SHARE_MIN:
        return make_advice("warm_start", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"Trainable embeddings hold {fmt_pct(share)} of the parameters (below "
                                      f"{fmt_pct(C.WARM_START_EMBED_SHARE_MIN)}): little to gain."), details=pr)
    led = ledger(profile)
    run_frac = ctx.option("warm_start", "run_frac")
    frac = clamp(run_frac + (1 - run_frac) * pr["step_time_saved_frac"])
    rationale = (f"{', '.join(pr['embeddings'])} train from random init and hold {fmt_num(pr['embedding_params'])} "
                 f"parameters ({fmt_pct(share)} of the model). Freezing pretrained vectors drops their gradients and "
                 f"optimizer state ({fmt_bytes(pr['memory_saved_bytes'])}; {led.note}): peak {fmt_bytes(led.peak)} -> "
                 f"{fmt_bytes(pr['peak_bytes_after'])}. The optimizer ({fmt_pct(pr['optimizer_share'])} of the step) "
                 f"skips them, and the run skips the early steps spent learning embeddings, taken as "
                 f"{fmt_pct(run_frac)} of the run: {fmt_pct(frac)} of the run's time in all.")
    return make_advice("warm_start", "recommended", profile, ctx, confidence="low",
                       time_saved_frac=frac, memory_saved_bytes=pr["memory_saved_bytes"],
                       peak_bytes_after=pr["peak_bytes_after"], rationale=rationale, snippet=snippet,
                       assumptions=[f"Early-epoch compute saved: {fmt_pct(run_frac)} of the run (ccprof assumption, "
                                    "unverified; --option warm_start.run_frac).",
                                    "Pretrained vectors of the same dimension exist for your vocabulary."],
                       sources=["Rajbhandari et al., ZeRO (SC 2020): fp32 Adam 16 bytes/param (4 weights + 4 grads + 8 state)"],
                       details=pr, options=WarmStartOptions(embeddings=pr["embeddings"]))
