"""compile: torch.compile fuses memory-bound ops and removes launch overhead."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import clamp, fmt_pct, gpu_spec, make_advice, op_shares
from ccprof.advisors._registry import register
from ccprof.advisors.advice import Advice
from ccprof.advisors.context import AdviceContext
from ccprof.profiler.profile import Profile

__all__ = ["advise_compile"]

SNIPPET = """
model = torch.compile(model)      # first steps compile (seconds to minutes); later ones run fused kernels
"""


@register("compile")
def advise_compile(profile: Profile, ctx: AdviceContext) -> Advice:
    """Saving = memory-bound op time x fusion gain + launch overhead, capped at the paper's geomean."""
    if profile.static.compile or any("OptimizedModule" in r for r in profile.model.roots):
        return make_advice("compile", "already_applied", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=f"The script already calls torch.compile (line {profile.static.lines.get('compile', '?')}).")
    spec = gpu_spec(profile, ctx)
    sh = op_shares(profile, spec)
    if not sh.from_ops or sh.total_s <= 0:
        return make_advice("compile", "not_applicable", profile, ctx, confidence="low", snippet=SNIPPET,
                           rationale="No per-op table was recorded, so the memory-bound share cannot be estimated.")
    other, launch = sh.share(sh.other_s), sh.share(sh.launch_s)
    cap = 1 - 1 / C.COMPILE_SPEEDUP_MAX
    frac = clamp(min(cap, other * C.COMPILE_FUSION_GAIN + launch * C.COMPILE_FUSION_GAIN))
    if frac < 0.01:
        return make_advice("compile", "not_applicable", profile, ctx, confidence="medium", snippet=SNIPPET,
                           rationale=f"Memory-bound ops and launches are only {fmt_pct(other + launch)} of the step: little to fuse.")
    rationale = (f"By ccprof's roofline on {spec.name}, memory-bound (non-matmul) ops are {fmt_pct(other)} of the step and "
                 f"{sh.kernels:,} kernel launches another {fmt_pct(launch)}. Fusion is taken to halve both: "
                 f"{fmt_pct(frac)} less time per step (capped at {fmt_pct(cap)}, the PyTorch 2 paper's 1.41x training "
                 "geomean). Compilation time in the first steps is not counted.")
    return make_advice("compile", "recommended", profile, ctx, confidence="low", time_saved_frac=frac,
                       rationale=rationale, snippet=SNIPPET,
                       assumptions=[f"Fusion gain {fmt_pct(C.COMPILE_FUSION_GAIN)} on memory-bound ops and launches (ccprof assumption, unverified)."],
                       sources=["Ansel et al., PyTorch 2, ASPLOS 2024 (TorchInductor 1.41x training geomean on A100; unverified figure)"],
                       details={"memory_bound_frac": other, "launch_frac": launch})
