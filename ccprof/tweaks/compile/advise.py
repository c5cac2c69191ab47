"""compile: torch.compile fuses the non-matmul ops between matmuls and cuts launches."""
from __future__ import annotations

from ccprof.advisors._common import fmt_change, fmt_pct, gpu_spec, make_advice, recost
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile

__all__ = ["advise_compile"]

SNIPPET = """
model = torch.compile(model)      # first steps compile (seconds to minutes); later ones run fused kernels
"""


@register("compile")
def advise_compile(profile: Profile, ctx: AdviceContext) -> Advice:
    """The step re-costed with its non-matmul ops fused per matmul-delimited group (Inductor's rule)."""
    if profile.static.compile or any("OptimizedModule" in r for r in profile.model.roots):
        return make_advice("compile", "already_applied", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=f"The script already calls torch.compile (line {profile.static.lines.get('compile', '?')}).")
    if not profile.ops or not profile.fusion:
        return make_advice("compile", "not_applicable", profile, ctx, confidence="low", snippet=SNIPPET,
                           rationale=("This profile has no fusion groups recorded (an older ccprof, or no FLOP step), "
                                      "so what torch.compile would fuse is unknown: nothing is projected."))
    spec = gpu_spec(profile, ctx)
    rc = recost(profile, ctx, policy={"compiled": True}, spec=spec)
    f = profile.fusion
    ops = sum(v.get("ops", 0) for v in f.values())
    groups = sum(v.get("gaps", 0) for v in f.values())
    nbytes = sum(v.get("bytes", 0) for v in f.values())
    fused = sum(v.get("fused_bytes", 0) for v in f.values())
    if rc.frac < 0.01:
        return make_advice("compile", "not_applicable", profile, ctx, confidence="medium", snippet=SNIPPET,
                           rationale=(f"Fusing the {ops} non-matmul ops into {groups} kernels would change the step "
                                      f"{rc.says()}: little to gain."),
                           details={"ops": ops, "groups": groups})
    rationale = (f"In forward and backward, {ops:,} non-matmul kernels sit in {groups} groups between matmuls; "
                 f"TorchInductor fuses each group into one kernel that reads what enters it and writes what leaves "
                 f"it ({fmt_pct(fused / nbytes if nbytes else 0)} of their {nbytes / 1e9:.2f} GB), and launches them "
                 f"without per-op Python dispatch. Re-costed: {rc.says()}: {fmt_change(rc.frac)}. Compilation in "
                 "the first steps (seconds to minutes) is not counted.")
    return make_advice("compile", "recommended", profile, ctx, confidence="medium", time_saved_frac=rc.frac,
                       rationale=rationale, snippet=SNIPPET,
                       assumptions=["Inductor fuses every pointwise and reduction op between two matmuls into one "
                                    "kernel (ccprof's stated fusion rule); matmuls, convolutions and attention keep "
                                    "their library kernels.",
                                    "A fused group moves the bytes of the tensors entering it and of those a later op "
                                    "reads (measured from the step's dataflow), at the elementwise bandwidth."],
                       sources=["Ansel et al., PyTorch 2, ASPLOS 2024 (TorchInductor's pointwise/reduction fusion)"],
                       details={"policy": {"compiled": True}, "ops": ops, "groups": groups, "bytes": nbytes,
                                "fused_bytes": fused, "step_s_before_model": rc.before.step_s,
                                "step_s_after_model": rc.after.step_s})
