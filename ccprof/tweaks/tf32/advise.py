"""tf32: let fp32 matmuls and convolutions use TF32 tensor cores (Ampere and newer)."""
from __future__ import annotations

from ccprof.advisors._common import (
    capability_at_least,
    fmt_change,
    fmt_pct,
    fp32_matmuls,
    gpu_spec,
    make_advice,
    recost,
)
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile

__all__ = ["advise_tf32"]

SNIPPET = """
torch.backends.cuda.matmul.allow_tf32 = True     # or torch.set_float32_matmul_precision("high")
torch.backends.cudnn.allow_tf32 = True
"""


@register("tf32")
def advise_tf32(profile: Profile, ctx: AdviceContext) -> Advice:
    """The step re-costed with fp32 GEMMs on the target's TF32 tensor cores."""
    p = profile.precision
    if p.tf32_matmul or p.float32_matmul_precision in ("high", "medium"):
        return make_advice("tf32", "already_applied", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=f"TF32 is already allowed (float32_matmul_precision='{p.float32_matmul_precision}').")
    spec = gpu_spec(profile, ctx)
    if not capability_at_least(spec, 8) or "tf32" not in spec.peak_flops:
        return make_advice("tf32", "not_applicable", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=f"{spec.name} ({spec.arch or 'architecture unknown'}) has no TF32 tensor cores.")
    rc = recost(profile, ctx, policy={"tf32_matmul": True, "tf32_cudnn": True}, spec=spec)
    fp32_gemm = [k for k in ("gemm", "attention", "attention_backward") if rc.before.by_class.get(k)]
    fm = fp32_matmuls(profile, ctx, spec)          # the one statement of the fact, shared with mixed_precision
    facts = {**fm.facts(), "step_s_model": rc.before.step_s}
    details = {"policy": {"tf32_matmul": True, "tf32_cudnn": True}, "gemm_classes": fp32_gemm, "facts": facts,
               "step_s_before_model": rc.before.step_s, "step_s_after_model": rc.after.step_s}
    if fm.flops <= 0:
        return make_advice("tf32", "not_applicable", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=("No matmul, convolution or attention op ran in fp32 (autocast or 16-bit "
                                      "weights): TF32 has nothing to change. " + rc.says() + "."),
                           details=details)
    already = fm.device_s - fm.cuda_core_s
    host = sorted(ph for ph, side in rc.before.bound.items() if side == "host" and rc.before.phase_s.get(ph, 0) > 0)
    where = (f"{fmt_pct(fm.cuda_core_time_frac)} of the step is fp32 matmuls on CUDA cores, what TF32 moves"
             + (f" ({fmt_pct(already / fm.step_s if fm.step_s else 0)} already runs on TF32: cuDNN convolutions' "
                "default)" if already > 0 else ""))
    bound = (f"; the host's dispatch, not the GPU, sets the {', '.join(host)} phase{'s' if len(host) > 1 else ''}"
             if host else "")
    rationale = (f"{fm.says()}; {where}{bound}. fp32 matmuls run on CUDA cores unless TF32 is allowed (PyTorch's "
                 f"default keeps torch.backends.cuda.matmul.allow_tf32 off; cuDNN convolutions already use TF32). On "
                 f"TF32 tensor cores ({spec.peak_flops['tf32'] / 1e12:.0f} vs {spec.peak_flops['fp32'] / 1e12:.1f} "
                 f"TFLOP/s dense on {spec.name}) the step goes {rc.says()}: {fmt_change(rc.frac)}. TF32 keeps fp32 "
                 "range with a 10-bit mantissa in matmul inputs.")
    return make_advice("tf32", "recommended", profile, ctx, confidence="medium", time_saved_frac=rc.frac,
                       rationale=rationale, snippet=SNIPPET,
                       assumptions=["TF32 GEMMs at the efficiency of XLA's measured H100 f32 (TF32) kernels, "
                                    "scaled to this GPU's TF32 peak and SM count; other ops unchanged.",
                                    "fp32 matmuls: the matmul, convolution and attention ops the profile recorded in "
                                    "float32, by their measured FLOPs and the cost model's seconds on this GPU."],
                       sources=["XLA matmul_interpolator_data.h (H100 f32 GEMMs on TF32 tensor cores)",
                                f"{spec.spec_source}"],
                       details=details)
