"""pruning: structured pruning of the repeated blocks' Linear layers, re-costed at the narrower shapes."""
from __future__ import annotations

from ccprof.advisors._common import (
    OneTimeCost,
    capability_at_least,
    fmt_change,
    fmt_pct,
    gpu_spec,
    linear_modules,
    make_advice,
    recost,
)
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import PruningOptions
from ccprof.hardware.edits import in_scopes, narrow_blocks
from ccprof.hardware.kernels import op_class

__all__ = ["advise_pruning"]

# Pruned layers lose accuracy until fine-tuned: Li et al., Pruning Filters for Efficient ConvNets,
# ICLR 2017, section 4: "retrain 40 epochs for CIFAR-10 and 20 epochs for ImageNet, which
# represents one-fourth of the original training epochs" (and "up to 3x original training times"
# in Han et al. 2015). ccprof counts that quarter of the planned run, at the pruned step time.
FINETUNE_RUN_FRAC = 0.25
FINETUNE_SOURCE = ("Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017: retraining after pruning takes "
                   "one-fourth of the original training epochs")

SNIPPET = """
import torch.nn.utils.prune as prune
# Structured: drop {pct} of output channels (rows) by L2 norm, then make it permanent.
for name, module in model.named_modules():
    if isinstance(module, torch.nn.Linear):
        prune.ln_structured(module, name="weight", amount={frac}, n=2, dim=0)
        prune.remove(module, "weight")
# Rows of zeros only save time once the layers are physically shrunk (torch-pruning), or,
# on Ampere+, use 2:4 semi-structured sparsity for Linear layers at inference:
# from torch.sparse import to_sparse_semi_structured
# module.weight = torch.nn.Parameter(to_sparse_semi_structured(module.weight))
"""


def _block_linears(profile: Profile) -> tuple[list[str], list[str]]:
    """(repeated-block containers, their Linear layers): what ccprof's pruning applier prunes."""
    containers = [rb.container for rb in profile.model.repeated_blocks if rb.count >= 2]
    lins = [m.name for m in linear_modules(profile) if any(m.name.startswith(c + ".") for c in containers)]
    return containers, lins


@register("pruning")
def advise_pruning(profile: Profile, ctx: AdviceContext) -> Advice:
    """The step re-costed with the blocks' weights ``prune_frac`` smaller (structured)."""
    frac_p = ctx.option("pruning", "amount")
    snippet = SNIPPET.format(pct=fmt_pct(frac_p), frac=frac_p)
    if "prune" in profile.static.lines or any(m.name.endswith("weight_orig") for m in profile.model.modules):
        return make_advice("pruning", "already_applied", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=f"The script already prunes (line {profile.static.lines.get('prune', '?')}).")
    containers, lins = _block_linears(profile)
    if not containers or not lins:
        what = ("has no repeated blocks" if not containers else
                f"has no nn.Linear layers in its repeated blocks ({', '.join(containers)})")
        return make_advice("pruning", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"{profile.model.class_ or 'The model'} {what}: structured pruning of "
                                      "block Linear layers (what ccprof can apply and cost) has nothing to act on."))
    block_gemm = [o for o in profile.ops if op_class(o.op) == "gemm" and in_scopes(o, containers)]
    if not block_gemm:
        return make_advice("pruning", "not_applicable", profile, ctx, confidence="low", snippet=snippet,
                           rationale="The profile has no per-op records of the blocks' matmuls to re-cost.")
    spec = gpu_spec(profile, ctx)
    rc = recost(profile, ctx, ops=narrow_blocks(profile.ops, containers, 1 - frac_p), spec=spec)
    if rc.frac < 0.01:
        return make_advice("pruning", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"Removing {fmt_pct(frac_p)} of the block weights would change the step "
                                      f"{rc.says()}: little to gain for the accuracy risk."))
    ampere = capability_at_least(spec, 8)
    rationale = (f"Removing {fmt_pct(frac_p)} of each block Linear's weights (structured: whole rows, then the "
                 f"layers rebuilt smaller) in {', '.join(containers)} ({len(lins)} layers) shrinks their GEMMs and "
                 f"the activations between them; re-costed at the narrower shapes: {rc.says()}, {fmt_change(rc.frac)}. "
                 "Unstructured (element-wise) sparsity gives no dense speed-up, and masks alone (what "
                 "torch.nn.utils.prune leaves) save nothing until the layers are physically smaller. ")
    rationale += (f"{spec.name} also has 2:4 sparse tensor cores (twice the math rate on Linear layers at "
                  "inference; not counted here)." if ampere else
                  f"{spec.name} predates Ampere: no 2:4 sparse tensor cores.")
    finetune_frac = FINETUNE_RUN_FRAC * (1 - rc.frac)        # a quarter of the run's steps, on the pruned step
    rationale += (" Pruning costs accuracy unless followed by fine-tuning: a quarter of the planned run's steps on "
                  f"the pruned model ({fmt_pct(finetune_frac)} of the run's cost), counted once. Confidence is low.")
    return make_advice("pruning", "recommended", profile, ctx, confidence="low", risk="accuracy",
                       time_saved_frac=rc.frac, rationale=rationale, snippet=snippet,
                       one_time=OneTimeCost("the fine-tune that recovers accuracy after pruning", FINETUNE_SOURCE,
                                            run_frac=finetune_frac),
                       assumptions=[f"{fmt_pct(frac_p)} of each block weight removed (--option pruning.amount; "
                                    "ccprof assumption), costed as both of its dimensions shrinking by "
                                    f"sqrt({1 - frac_p:g}).",
                                    "Pruned layers are rebuilt smaller (torch-pruning or a re-export).",
                                    f"The fine-tune after pruning runs {fmt_pct(FINETUNE_RUN_FRAC)} of the planned "
                                    "run's steps at the pruned step time (Li et al. 2017: one-fourth of the original "
                                    "training); Han et al. 2015 report up to 3x the original training."],
                       sources=["Mishra et al. 2021, Accelerating Sparse Deep Neural Networks (2:4 doubles math throughput)",
                                "Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017 (retraining: one-fourth "
                                "of the original training epochs)",
                                "Frankle & Carbin, Lottery Ticket Hypothesis, ICLR 2019 (>90% prunable, unstructured)"],
                       # whole rows by L2 norm: the structured pruning costed here
                       options=PruningOptions(method="ln_structured", amount=frac_p, targets=lins),
                       details={"containers": containers, "linear_layers": lins, "ampere_or_newer": ampere,
                                "step_s_before_model": rc.before.step_s, "step_s_after_model": rc.after.step_s})
