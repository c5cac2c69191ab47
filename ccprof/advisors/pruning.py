"""pruning: structured pruning of channels/heads; 2:4 sparsity on Ampere and newer."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import (capability_at_least, clamp, fmt_pct, gpu_spec, is_matmul,
                                     linear_modules, make_advice)
from ccprof.advisors._registry import register
from ccprof.advisors.advice import Advice
from ccprof.advisors.context import AdviceContext
from ccprof.profiler.profile import Profile

__all__ = ["advise_pruning"]

SNIPPET = """
import torch.nn.utils.prune as prune
# Structured: drop {pct} of output channels (rows) by L2 norm, then make it permanent.
for name, module in model.named_modules():
    if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
        prune.ln_structured(module, name="weight", amount={frac}, n=2, dim=0)
        prune.remove(module, "weight")
# Rows of zeros only save time once the layers are physically shrunk (torch-pruning), or,
# on Ampere+, use 2:4 semi-structured sparsity for Linear layers:
# from torch.sparse import to_sparse_semi_structured
# module.weight = torch.nn.Parameter(to_sparse_semi_structured(module.weight))
"""


@register("pruning")
def advise_pruning(profile: Profile, ctx: AdviceContext) -> Advice:
    """Project structured pruning's FLOPs cut on matmul layers; mention 2:4 where supported."""
    frac_p = ctx.prune_frac
    snippet = SNIPPET.format(pct=fmt_pct(frac_p), frac=frac_p)
    if "prune" in profile.static.lines or any(m.name.endswith("weight_orig") for m in profile.model.modules):
        return make_advice("pruning", "already_applied", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=f"The script already prunes (line {profile.static.lines.get('prune', '?')}).")
    per = profile.flops.per_step
    mm = sum(v for k, v in profile.flops.by_op.items() if is_matmul(k))
    if not mm:
        mm = sum(m.flops for m in linear_modules(profile))
    share = mm / per if per else 0.0
    if share < 0.5:
        return make_advice("pruning", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"Matmul/convolution FLOPs are {fmt_pct(share)} of the step: pruning their "
                                      "channels would not cut much."))
    spec = gpu_spec(profile, ctx)
    ampere = capability_at_least(spec, 8)
    structured = clamp(frac_p * share)
    lin_share = sum(m.flops for m in linear_modules(profile)) / per if per else 0.0
    sparse24 = clamp(lin_share * (1 - 1 / C.SPARSE_24_SPEEDUP)) if ampere else 0.0
    rationale = (f"Matmul and convolution FLOPs are {fmt_pct(share)} of the {per:,} per step. Removing "
                 f"{fmt_pct(frac_p)} of channels/heads (structured) cuts those FLOPs by the same share: "
                 f"{fmt_pct(structured)} of the step once the layers are physically smaller. Unstructured "
                 "(element-wise) sparsity gives no dense speed-up, so ccprof does not count it. ")
    rationale += (f"{spec.name} (compute capability {spec.capability}) supports 2:4 sparsity: Linear layers "
                  f"({fmt_pct(lin_share)} of FLOPs) could run up to {fmt_pct(sparse24)} faster, on forward matmuls "
                  "after training." if ampere else
                  f"{spec.name} predates Ampere, so 2:4 sparse tensor cores are not available.")
    rationale += " Pruning costs accuracy unless followed by fine-tuning; confidence is low."
    return make_advice("pruning", "recommended", profile, ctx, confidence="low", risk="accuracy",
                       time_saved_frac=structured, rationale=rationale, snippet=snippet,
                       assumptions=[f"{fmt_pct(frac_p)} of channels/heads removed (AdviceContext.prune_frac; ccprof assumption).",
                                    "Pruned layers are rebuilt smaller; time follows FLOPs."],
                       sources=["Mishra et al. 2021, Accelerating Sparse Deep Neural Networks (2:4 doubles math throughput)",
                                "Frankle & Carbin, Lottery Ticket Hypothesis, ICLR 2019 (>90% prunable, unstructured)"],
                       details={"matmul_flops_frac": share, "structured_time_saved_frac": structured,
                                "sparse_2_4_time_saved_frac": sparse24, "ampere_or_newer": ampere})
