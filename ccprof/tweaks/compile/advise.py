"""compile: torch.compile fuses the non-matmul ops between matmuls and cuts launches."""
from __future__ import annotations

from dataclasses import replace

from ccprof.advisors._common import OneTimeCost, fmt_change, fmt_pct, fmt_s, gpu_spec, make_advice, recost
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.vocab import MODEL_PHASES

__all__ = ["advise_compile"]

# Compiling is paid once per run, on the GPU's clock: ccprof states it as seconds per aten op of
# one forward + backward (what Dynamo traces and Inductor compiles), from the one published
# training run with and without torch.compile we could measure it from: nanoGPT at n_layer=4,
# n_head=4, n_embd=128, block_size=64, batch 12 (karpathy/nanoGPT pull request #392): the first
# iteration took 7,961.94 ms compiled and 1,166.17 ms eager, 6.80 s of compiling; ccprof's profile
# of that model and batch (the vendored tests/external/nanogpt/model.py) records 75 forward and
# 97 backward aten op calls: 6.80 s / 172 = 39.5 ms per op. *Unverified* beyond that run: the
# PyTorch 2 dashboards' early mean training compile times (pytorch/pytorch issue #93794: 120 s
# over Hugging Face models, 278 s TorchBench, 427 s TIMM) say larger graphs take minutes.
COMPILE_S_PER_OP = (7.96194 - 1.16617) / 172
COMPILE_SOURCE = ("ccprof's estimate: 39.5 ms per forward/backward aten op, from nanoGPT's first compiled "
                  "iteration (6.80 s more than eager over 172 ops; karpathy/nanoGPT pull request #392)")


def compile_s(profile: Profile) -> tuple[float, int]:
    """(seconds compiling takes, aten op calls it compiles): one micro-batch's forward and backward
    ops (the graph is compiled once, whatever the accumulation) x ``COMPILE_S_PER_OP``."""
    ops = sum(o.count for o in profile.ops if o.phase in MODEL_PHASES)
    ops = ops // max(1, profile.steps.micro_batches)
    return ops * COMPILE_S_PER_OP, ops


SNIPPET = """
model = torch.compile(model)      # first steps compile (seconds to minutes); later ones run fused kernels
"""


PARTIAL_ASSUMPTION = ("The run compiles some of its trained models and not others; ccprof's cost model compiles "
                      "a step whole or not at all, so the step is costed from fully eager to fully compiled: an "
                      "upper bound on what compiling the eager ones saves.")


def _partial_says(compiled: list[str], eager: list[str]) -> str:
    return (f"The run trains {len(compiled) + len(eager)} models and compiles {len(compiled)}: "
            f"{', '.join(eager)} run{'s' if len(eager) == 1 else ''} eager (compile each trained model). ")


@register("compile")
def advise_compile(profile: Profile, ctx: AdviceContext) -> Advice:
    """The step re-costed with its non-matmul ops fused per matmul-delimited group (Inductor's rule)."""
    roots = profile.model.roots
    compiled = [r for r in roots if "OptimizedModule" in r]
    eager = [r for r in roots if "OptimizedModule" not in r]
    partial = bool(compiled and eager)
    if (profile.static.compile or compiled) and not partial:
        return make_advice("compile", "already_applied", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=f"The script already calls torch.compile (line {profile.static.lines.get('compile', '?')}).")
    costed = profile
    if partial:
        # the cost model compiles a step whole or not at all: the step is costed from eager, a bound
        costed = replace(profile, static=replace(profile.static, compile=False),
                         model=replace(profile.model, roots=eager))
    if not profile.ops or not profile.fusion:
        return make_advice("compile", "not_applicable", profile, ctx, confidence="low", snippet=SNIPPET,
                           rationale=("This profile has no fusion groups recorded (an older ccprof, or no FLOP step), "
                                      "so what torch.compile would fuse is unknown: nothing is projected."))
    spec = gpu_spec(profile, ctx)
    rc = recost(costed, ctx, policy={"compiled": True}, spec=spec)
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
    comp_s, comp_ops = compile_s(profile)
    rationale = (_partial_says(compiled, eager) if partial else "") + (
                 f"In forward and backward, {ops:,} non-matmul kernels sit in {groups} groups between matmuls; "
                 f"TorchInductor fuses each group into one kernel that reads what enters it and writes what leaves "
                 f"it ({fmt_pct(fused / nbytes if nbytes else 0)} of their {nbytes / 1e9:.2f} GB), and launches them "
                 f"without per-op Python dispatch. Re-costed: {rc.says()}: {fmt_change(rc.frac)}. Compiling the "
                 f"{comp_ops:,} forward and backward ops takes about {fmt_s(comp_s)} once, in the first step.")
    return make_advice("compile", "recommended", profile, ctx, confidence="low" if partial else "medium",
                       time_saved_frac=rc.frac,
                       rationale=rationale, snippet=SNIPPET,
                       one_time=OneTimeCost(f"compiling {comp_ops:,} forward and backward ops", COMPILE_SOURCE,
                                            s=comp_s),
                       assumptions=["Inductor fuses every pointwise and reduction op the model's modules run between "
                                    "two matmuls into one kernel (ccprof's stated fusion rule); matmuls, convolutions "
                                    "and attention keep their library kernels, and ops outside the compiled model (a "
                                    "loss computed on its output) keep their eager kernels.",
                                    "A fused group moves the bytes of the tensors entering it and of those a later op "
                                    "reads (measured from the step's dataflow), at the elementwise bandwidth.",
                                    f"Compiling takes {COMPILE_S_PER_OP * 1e3:.1f} ms per forward/backward aten op "
                                    f"({fmt_s(comp_s)} here), once per run, billed at the GPU's price; recompiles "
                                    "(a last partial batch, an eval graph) and a warm compile cache are not counted."]
                       + ([PARTIAL_ASSUMPTION] if partial else []),
                       sources=["Ansel et al., PyTorch 2, ASPLOS 2024 (TorchInductor's pointwise/reduction fusion)",
                                "karpathy/nanoGPT pull request #392 (first iteration 7,961.94 ms compiled vs "
                                "1,166.17 ms eager, 4-layer 128-wide GPT)",
                                "pytorch/pytorch issue #93794 (PyTorch 2 dashboard: mean Inductor compile times, "
                                "training)"],
                       details={"policy": {"compiled": True}, "ops": ops, "groups": groups, "bytes": nbytes,
                                "fused_bytes": fused, "compile_s": comp_s, "compile_ops": comp_ops,
                                "step_s_before_model": rc.before.step_s,
                                "step_s_after_model": rc.after.step_s,
                                **({"compiled_roots": compiled, "eager_roots": eager} if partial else {})})
