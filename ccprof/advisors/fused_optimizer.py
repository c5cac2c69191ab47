"""fused_optimizer: one fused kernel for the whole parameter update."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import clamp, fmt_pct, fmt_s, make_advice
from ccprof.advisors._registry import register
from ccprof.advisors.advice import Advice
from ccprof.advisors.context import AdviceContext
from ccprof.profiler.profile import Profile

__all__ = ["advise_fused_optimizer", "FUSED_CLASSES"]

FUSED_CLASSES = ("Adam", "AdamW", "SGD", "Adagrad", "Adamax", "NAdam", "RAdam")  # torch.optim with fused=True (torch 2.4+; unverified for the last three)

SNIPPET = """
optimizer = torch.optim.{cls}(model.parameters(), lr=lr, fused=True)   # CUDA parameters
"""


@register("fused_optimizer")
def advise_fused_optimizer(profile: Profile, ctx: AdviceContext) -> Advice:
    """Saving = optimizer phase share x (1 - 1/speed-up)."""
    opts = profile.optimizer.optimizers if profile.optimizer else []
    cls = opts[0].class_ if opts else "AdamW"
    snippet = SNIPPET.format(cls=cls if cls in FUSED_CLASSES else "AdamW")
    if not opts:
        return make_advice("fused_optimizer", "not_applicable", profile, ctx, confidence="high", snippet=snippet,
                           rationale="No torch.optim optimizer was seen: the script updates parameters itself.")
    if all(o.fused for o in opts):
        ph = profile.steps.phase_s
        total = sum(ph.values()) if ph else 0.0
        effect = (f" Measured in this run: the optimizer step takes {fmt_s(ph.get('optimizer', 0.0))} "
                  f"({fmt_pct(ph.get('optimizer', 0.0) / total)} of the step).") if total else ""
        return make_advice("fused_optimizer", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=f"{cls} already runs with fused=True.{effect}")
    if not any(o.class_ in FUSED_CLASSES for o in opts):
        return make_advice("fused_optimizer", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=f"{cls} has no fused implementation in torch.optim.")
    ph = profile.steps.phase_s
    total = sum(ph.values()) if ph else 0.0
    share = ph.get("optimizer", 0.0) / total if total else 0.0
    speed = C.FUSED_OPT_SPEEDUP if not opts[0].foreach else C.FUSED_OPT_SPEEDUP / 1.5
    frac = clamp(share * (1 - 1 / speed))
    if frac < 0.005:
        return make_advice("fused_optimizer", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=f"The optimizer step is {fmt_pct(share)} of the step: fusing it would save little.")
    rationale = (f"{cls}.step() is {fmt_pct(share)} of the measured step ({ph.get('optimizer', 0.0) * 1e3:.1f} ms); "
                 f"a fused update taken as {speed:.1f}x faster saves {fmt_pct(frac)} per step.")
    return make_advice("fused_optimizer", "recommended", profile, ctx, confidence="low", time_saved_frac=frac,
                       rationale=rationale, snippet=snippet,
                       assumptions=[f"Fused update {C.FUSED_OPT_SPEEDUP:.0f}x faster than per-parameter, "
                                    f"{C.FUSED_OPT_SPEEDUP / 1.5:.1f}x than foreach (ccprof assumption, unverified).",
                                    "The optimizer's share of the step is the same on the target GPU."],
                       sources=["PyTorch torch.optim docs: fused implementations are typically fastest"],
                       details={"optimizer_share": share})
