"""finetune: start from published weights of the same family instead of random init."""
from __future__ import annotations

from ccprof.advisors._common import fmt_num, fmt_pct, make_advice
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.advisors.families import pretrained_family
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile

__all__ = ["advise_finetune"]

SNIPPET = """
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained("{hub_id}")   # instead of Model(config)
# torchvision: torchvision.models.resnet50(weights="IMAGENET1K_V2")
# then train for ~{budget} of the planned steps, with a smaller learning rate
"""

_HUB_HINT = {"llama": "meta-llama/Llama-3.2-1B", "gpt2": "gpt2", "bert": "bert-base-uncased",
             "mistral": "mistralai/Mistral-7B-v0.1", "qwen2": "Qwen/Qwen2.5-0.5B", "t5": "t5-small",
             "roberta": "roberta-base", "vit": "google/vit-base-patch16-224"}


@register("finetune")
def advise_finetune(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend fine-tuning when a from-scratch model matches a pretrained family."""
    m = profile.model
    fam = pretrained_family(profile)
    budget = ctx.option("finetune", "budget_frac")
    snippet = SNIPPET.format(hub_id=_HUB_HINT.get(fam or "", f"<a published {fam or 'model'} checkpoint>"),
                             budget=fmt_pct(budget))
    if m.pretrained or profile.static.from_pretrained or profile.static.peft:
        return make_advice("finetune", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=(f"The weights come from a checkpoint "
                                      f"({m.loaded_from or 'from_pretrained in the script'}): this run already fine-tunes."))
    if fam is None:
        return make_advice("finetune", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"{m.class_ or 'The model'} was built from scratch but matches no pretrained "
                                      "family ccprof knows (no Hugging Face model_type, not a known vision backbone)."))
    frac = 1 - budget
    rationale = (f"{m.class_} ({fmt_num(m.params)} parameters) was built from scratch: no checkpoint or "
                 f"from_pretrained load was seen, yet it is a '{fam}' model with published weights. Fine-tuning them "
                 f"for {fmt_pct(budget)} of the planned steps replaces {fmt_pct(frac)} of the run.")
    return make_advice("finetune", "recommended", profile, ctx, confidence="low",
                       time_saved_frac=frac, rationale=rationale, snippet=snippet,
                       assumptions=[f"Fine-tuning budget: {fmt_pct(budget)} of the planned from-scratch run "
                                    "(--option finetune_budget; He et al. 2019's 6x scratch schedules).",
                                    "Your architecture and vocabulary match the published checkpoint, or can be adapted."],
                       sources=["He, Girshick, Dollar, Rethinking ImageNet Pre-training, ICCV 2019",
                                "He et al., Rethinking ImageNet Pre-training (ICCV 2019): scratch catches up only with ~6x longer schedules"],
                       details={"family": fam, "budget_frac": budget, "scope": "run"})
