"""finetune: start from published weights of the same family instead of random init.

Before it claims "published weights" the advisor checks what a checkpoint must match to load as
it is (``ccprof.advisors.families.published_match``: hidden size, layers, heads, vocabulary; a
ResNet's blocks). A script that can load a pretrained model behind an option the run left off is
told to turn on what it has (``--model gpt2``), not to write new code.
"""
from __future__ import annotations

from ccprof.advisors._common import fmt_num, fmt_pct, make_advice
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.advisors.families import VISION_BACKBONES, pretrained_family, published_match
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile

__all__ = ["advise_finetune"]

SNIPPET = """
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained("{hub_id}")   # instead of Model(config)
# torchvision: torchvision.models.resnet50(weights="IMAGENET1K_V2")
# then train for ~{budget} of the planned steps, with a smaller learning rate
"""

_SOURCES = ["He, Girshick, Dollar, Rethinking ImageNet Pre-training (ICCV 2019): from scratch catches up only "
            "with ~6x longer schedules"]


def _budget_assumption(budget: float) -> str:
    return (f"Fine-tuning budget: {fmt_pct(budget)} of the planned from-scratch run (--option finetune_budget; "
            "He et al. 2019's 6x scratch schedules).")


def _off_in_run(profile: Profile, ctx: AdviceContext, budget: float, details: dict, snippet: str) -> Advice:
    """The script loads pretrained weights behind an option this run left off: recommended, and
    ``make_advice`` says "turn on what you have" with the command (the catalog's fact
    ``from_pretrained``), not new code."""
    frac = 1 - budget
    rationale = (f"This run trained {profile.model.class_ or 'the model'} from scratch, yet the script can load "
                 f"pretrained weights. Fine-tuning them for {fmt_pct(budget)} of the planned steps replaces "
                 f"{fmt_pct(frac)} of the run.")
    return make_advice("finetune", "recommended", profile, ctx, confidence="low", time_saved_frac=frac,
                       rationale=rationale, snippet=snippet,     # make_advice shows the command instead
                       assumptions=[_budget_assumption(budget),
                                    "The pretrained model the option loads costs per step what this run's model "
                                    "costs; a larger checkpoint costs more per step (profile it with the option on)."],
                       sources=_SOURCES, details=details)


@register("finetune")
def advise_finetune(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend fine-tuning when a from-scratch model can load a published checkpoint, or when
    the script can load one behind an option the run left off."""
    m = profile.model
    s = profile.static
    fam = pretrained_family(profile)
    budget = ctx.option("finetune", "budget_frac")
    match = published_match(profile)
    hub_id = match.published.id if match is not None else f"<a published {fam or 'model'} checkpoint>"
    snippet = SNIPPET.format(hub_id=hub_id, budget=fmt_pct(budget))
    details = {"family": fam, "budget_frac": budget, "scope": "run"}
    if m.pretrained or s.from_pretrained or s.peft:
        return make_advice("finetune", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=(f"The weights come from a checkpoint "
                                      f"({m.loaded_from or 'from_pretrained in the script'}): this run already fine-tunes."),
                           details=details)
    if "from_pretrained" in s.inactive:
        return _off_in_run(profile, ctx, budget, details, snippet)
    if fam is None:
        return make_advice("finetune", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"{m.class_ or 'The model'} was built from scratch but matches no pretrained "
                                      "family ccprof knows (no Hugging Face model_type, not a known vision backbone)."),
                           details=details)
    if match is None and fam in VISION_BACKBONES.values():
        # a torchvision class is nearly always built by its builder (resnet50(), efficientnet_b0()),
        # whose widths are the published ones; the table checks only the ResNets' blocks
        frac = 1 - budget
        return make_advice("finetune", "recommended", profile, ctx, confidence="low", time_saved_frac=frac,
                           rationale=(f"{m.class_} ({fmt_num(m.params)} parameters) was built from scratch, yet it "
                                      f"is a torchvision '{fam}' backbone with published ImageNet weights. "
                                      f"Fine-tuning them for {fmt_pct(budget)} of the planned steps replaces "
                                      f"{fmt_pct(frac)} of the run."),
                           snippet=snippet,
                           assumptions=[_budget_assumption(budget),
                                        f"The model was built by a torchvision '{fam}' builder with its published "
                                        "widths (ccprof checked the class only)."],
                           sources=[*_SOURCES, "torchvision.models: pretrained weights per builder "
                                    "(https://pytorch.org/vision/stable/models.html)"], details=details)
    if match is None:
        return make_advice("finetune", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"{m.class_} is a '{fam}' model, but ccprof holds no published '{fam}' config "
                                      "to check its widths and vocabulary against, so it cannot say a checkpoint "
                                      "fits. If one of the same hidden size, depth, heads and vocabulary is "
                                      "published, load it with from_pretrained."),
                           details=details)
    details.update(checkpoint=match.published.id, differs=match.differs)
    if not match.fits:
        return make_advice("finetune", "not_applicable", profile, ctx, confidence="high", snippet=snippet,
                           rationale=(f"{m.class_} ({fmt_num(m.params)} parameters) is a '{fam}' model built from "
                                      f"scratch, but no published '{fam}' checkpoint fits it. The closest, "
                                      f"{match.says()}, differs in {'; '.join(match.differs)}: its weights cannot "
                                      "load into this model. Fine-tuning needs the published architecture (and "
                                      "its tokenizer), a different model from the one this run trains."),
                           sources=[match.published.source], details=details)
    frac = 1 - budget
    checked = "" if not match.unknown else f" ({', '.join(match.unknown)} not recorded, not checked)"
    rationale = (f"{m.class_} ({fmt_num(m.params)} parameters) was built from scratch: no checkpoint or "
                 f"from_pretrained load was seen, yet it has the architecture of {match.says()}{checked}, whose "
                 f"weights are published. Fine-tuning them for {fmt_pct(budget)} of the planned steps replaces "
                 f"{fmt_pct(frac)} of the run.")
    assumptions = [_budget_assumption(budget)]
    if match.unknown:
        assumptions.append(f"The model's {', '.join(match.unknown)} match {match.published.id} (not in the profile).")
    return make_advice("finetune", "recommended", profile, ctx, confidence="low",
                       time_saved_frac=frac, rationale=rationale, snippet=snippet,
                       assumptions=assumptions, sources=[*_SOURCES, match.published.source], details=details)
