"""tf32: let fp32 matmuls use TF32 tensor cores (Ampere and newer)."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import (capability_at_least, clamp, fmt_pct, gpu_spec, make_advice, op_shares,
                                     target_projection)
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
    # TF32 matmuls: the roofline at the TF32 peak, but no more than 3x faster than fp32
    # (HF guide: "up to 3x"), and never ahead of bf16 (the TF32 peak is half bf16's and the
    # operands stay 4-byte) -- the hardware stage's bf16 projection bounds it when present.
    after_mm = max(sh.matmul_fp32_flops / spec.peak_flops["tf32"], sh.matmul_fp32_s / C.TF32_SPEEDUP_FALLBACK)
    frac = clamp((sh.matmul_fp32_s - after_mm) / sh.total_s)
    proj = target_projection(profile, ctx)
    bound = ""
    if proj is not None and proj.step_s and proj.step_s_bf16:
        bf16_frac = clamp(1 - proj.step_s_bf16 / proj.step_s)
        if frac > bf16_frac:
            frac, bound = bf16_frac, f" (bounded by the hardware stage's bf16 projection, {fmt_pct(bf16_frac)})"
    rationale = (f"fp32 matmuls ({sh.matmul_fp32_flops:,} FLOPs per step) are {fmt_pct(share)} of the step on {spec.name} "
                 f"by ccprof's roofline ({spec.source}); at the TF32 peak ({spec.peak_flops['tf32'] / 1e12:.0f} vs "
                 f"{spec.peak_flops['float32'] / 1e12:.1f} TFLOP/s, at most {C.TF32_SPEEDUP_FALLBACK:.0f}x in practice) the step "
                 f"takes {fmt_pct(frac)} less time{bound}. TF32 keeps "
                 "fp32 range with a 10-bit mantissa in matmul inputs.")
    return make_advice("tf32", "recommended", profile, ctx, confidence="medium", time_saved_frac=frac,
                       rationale=rationale, snippet=SNIPPET,
                       assumptions=["fp32 matmul time follows the roofline; other ops unchanged.",
                                    f"TF32 matmuls at most {C.TF32_SPEEDUP_FALLBACK:.0f}x faster than fp32 (HF single-GPU guide)."],
                       sources=["Hugging Face single-GPU performance guide: TF32 up to 3x on matmuls",
                                "NVIDIA A100 datasheet (TF32 156 vs FP32 19.5 TFLOP/s)"],
                       details={"fp32_matmul_time_frac": share})
