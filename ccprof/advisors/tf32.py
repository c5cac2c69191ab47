"""tf32: let fp32 matmuls use TF32 tensor cores (Ampere and newer)."""
from __future__ import annotations

from ccprof.advisors._common import (capability_at_least, clamp, fmt_pct, gpu_spec, make_advice, op_shares)
from ccprof.advisors._registry import register
from ccprof.advisors.advice import Advice
from ccprof.advisors.context import AdviceContext
from ccprof.profiler.profile import Profile

__all__ = ["advise_tf32"]

SNIPPET = """
torch.backends.cuda.matmul.allow_tf32 = True     # or torch.set_float32_matmul_precision("high")
torch.backends.cudnn.allow_tf32 = True
"""


@register("tf32")
def advise_tf32(profile: Profile, ctx: AdviceContext) -> Advice:
    """fp32 matmul time through the roofline at the TF32 peak of the target GPU."""
    p = profile.precision
    if p.tf32_matmul or p.float32_matmul_precision in ("high", "medium"):
        return make_advice("tf32", "already_applied", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=f"TF32 is already allowed (float32_matmul_precision='{p.float32_matmul_precision}').")
    spec = gpu_spec(profile, ctx)
    if not capability_at_least(spec, 8) or spec.peak_flops["tf32"] <= spec.peak_flops["float32"]:
        return make_advice("tf32", "not_applicable", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=f"{spec.name} (compute capability {spec.capability}) has no TF32 tensor cores.")
    sh = op_shares(profile, spec)
    share = sh.share(sh.matmul_fp32_s)
    if sh.matmul_fp32_flops == 0 or share <= 0:
        return make_advice("tf32", "not_applicable", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale="No fp32 matmuls were seen (autocast or 16-bit weights): TF32 has nothing to speed up.")
    after_mm = sh.matmul_fp32_flops / spec.peak_flops["tf32"]
    frac = clamp((sh.matmul_fp32_s - after_mm) / sh.total_s)
    rationale = (f"fp32 matmuls ({sh.matmul_fp32_flops:,} FLOPs per step) are {fmt_pct(share)} of the step on {spec.name} "
                 f"by ccprof's roofline ({spec.source}); at the TF32 peak ({spec.peak_flops['tf32'] / 1e12:.0f} vs "
                 f"{spec.peak_flops['float32'] / 1e12:.1f} TFLOP/s) the step takes {fmt_pct(frac)} less time. TF32 keeps "
                 "fp32 range with a 10-bit mantissa in matmul inputs.")
    return make_advice("tf32", "recommended", profile, ctx, confidence="medium", time_saved_frac=frac,
                       rationale=rationale, snippet=SNIPPET,
                       assumptions=["fp32 matmul time follows the roofline; other ops unchanged."],
                       sources=["Hugging Face single-GPU performance guide: TF32 up to 3x on matmuls",
                                "NVIDIA A100 datasheet (TF32 156 vs FP32 19.5 TFLOP/s)"],
                       details={"fp32_matmul_time_frac": share})
