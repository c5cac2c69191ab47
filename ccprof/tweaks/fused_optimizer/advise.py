"""fused_optimizer: one fused kernel for the whole parameter update."""
from __future__ import annotations

from ccprof.advisors._common import fmt_change, fmt_pct, fmt_s, make_advice, recost
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile

__all__ = ["advise_fused_optimizer", "FUSED_CLASSES"]

FUSED_CLASSES = ("Adam", "AdamW", "SGD", "Adagrad")  # torch.optim classes with fused=True (torch 2.4+)

SNIPPET = """
optimizer = torch.optim.{cls}(model.parameters(), lr=lr, fused=True)   # CUDA parameters
"""


def _fused_fails_on_gaps(opt) -> bool:
    """True for an SGD with momentum whose parameters some steps left without a gradient: fused,
    its step fails once such a parameter gets its first gradient after the others' buffers exist."""
    momentum = opt.hyperparams.get("momentum", 0)
    moving = any(m for m in momentum) if isinstance(momentum, list) else bool(momentum)
    return opt.class_ == "SGD" and moving and opt.grad_gap_params > 0


@register("fused_optimizer")
def advise_fused_optimizer(profile: Profile, ctx: AdviceContext) -> Advice:
    """The optimizer step re-costed as one fused kernel reading and writing each state once."""
    opts = profile.optimizer.optimizers if profile.optimizer else []
    cls = opts[0].class_ if opts else "AdamW"
    snippet = SNIPPET.format(cls=cls if cls in FUSED_CLASSES else "AdamW")
    if not opts:
        return make_advice("fused_optimizer", "not_applicable", profile, ctx, confidence="high", snippet=snippet,
                           rationale="No torch.optim optimizer was seen: the script updates parameters itself.")
    on_cuda = profile.static.on_cuda.get("fused_optimizer")
    if on_cuda and profile.device.type != "cuda" and not all(o.fused for o in opts):
        # the script sets fused=True only when the device is CUDA: the target GPU takes that branch
        rc = recost(profile, ctx, policy={"optimizer": "fused"})
        line = profile.static.lines.get("fused_optimizer", "?")
        return make_advice(
            "fused_optimizer", "already_applied", profile, ctx, confidence="high", snippet=snippet,
            rationale=(f"Already applied on CUDA (line {line}: {on_cuda}): the value passed is True when the "
                       f"device is CUDA, and the target GPU takes that branch. This {profile.device.type.upper()} "
                       f"run took the other one, so its measured {cls}.step() is unfused; on {rc.spec.name} ccprof "
                       f"costs the step fused, as the script would run it there (optimizer "
                       f"{fmt_s(rc.before.phase_s.get('optimizer', 0.0))}, {rc.before.policy.optimizer} kernel, in "
                       f"every advice's 'before'). Where: {profile.static.behind.get('fused_optimizer', on_cuda)}."),
            assumptions=["The target GPU is CUDA: device tests such as `torch.cuda.is_available()` and "
                         "`device_type == 'cuda'` are taken as True there."],
            sources=["PyTorch torch.optim docs: fused implementations (CUDA tensors)"],
            details={"on_cuda": on_cuda, "optimizer_s_before": rc.before.phase_s.get("optimizer", 0.0)})
    if all(o.fused for o in opts):
        # the target GPU's figure (the one cost model), not this host's wall time
        rc = recost(profile, ctx)
        opt_s, step_s = rc.before.phase_s.get("optimizer", 0.0), rc.before.step_s
        effect = (f" On {rc.spec.name} its step takes {fmt_s(opt_s)} ({fmt_pct(opt_s / step_s)} of the projected "
                  f"{fmt_s(step_s)} step).") if step_s else ""
        return make_advice("fused_optimizer", "already_applied", profile, ctx, confidence="high", snippet=snippet,
                           rationale=f"{cls} already runs with fused=True.{effect}")
    if not any(o.class_ in FUSED_CLASSES for o in opts):
        return make_advice("fused_optimizer", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=f"{cls} has no fused implementation in torch.optim.")
    gapped = next((o for o in opts if _fused_fails_on_gaps(o)), None)
    if gapped is not None:
        names = ", ".join(gapped.grad_gaps[:3]) + (f" and {gapped.grad_gap_params - 3} more"
                                                   if gapped.grad_gap_params > 3 else "")
        return make_advice(
            "fused_optimizer", "not_applicable", profile, ctx, confidence="high", snippet=snippet,
            rationale=(f"Some steps left {gapped.grad_gap_params} of the parameters {gapped.class_} updates without a "
                       f"gradient ({names}: a branch of the model those steps did not take). torch's fused SGD with "
                       f"momentum cannot follow that: once the other parameters hold momentum buffers, a parameter "
                       f"whose first gradient comes later reaches the fused kernel without one, and step() raises "
                       f"TypeError (expected Tensor ... but got NoneType). The foreach update, the default on CUDA, "
                       f"handles it."),
            assumptions=["Parameters that a measured step left without a gradient can get their first one "
                         "after the optimizer's first step in a real run."],
            sources=["torch/optim/sgd.py, _fused_sgd: the momentum buffers go to torch._fused_sgd_ as one list, "
                     "all or none of them set"],
            details={"grad_gaps": gapped.grad_gaps, "grad_gap_params": gapped.grad_gap_params})
    rc = recost(profile, ctx, policy={"optimizer": "fused"})
    before, after = rc.before.phase_s.get("optimizer", 0.0), rc.after.phase_s.get("optimizer", 0.0)
    if rc.frac < 0.005:
        return make_advice("fused_optimizer", "not_applicable", profile, ctx, confidence="medium", snippet=snippet,
                           rationale=(f"The optimizer step would go from {fmt_s(before)} ({rc.before.policy.optimizer}) to "
                                      f"{fmt_s(after)} fused on {rc.spec.name}: little to gain."))
    rationale = (f"On {rc.spec.name} {cls}.step() takes {fmt_s(before)} as the script would run it "
                 f"({rc.before.policy.optimizer} kernels: each op streams every parameter's tensors again); fused, one "
                 f"kernel reads the parameter, gradient and state once and writes them once: {fmt_s(after)}. "
                 f"The step goes {rc.says()}: {fmt_change(rc.frac)}.")
    return make_advice("fused_optimizer", "recommended", profile, ctx, confidence="medium", time_saved_frac=rc.frac,
                       rationale=rationale, snippet=snippet,
                       assumptions=["Fused Adam/AdamW move 28 bytes per fp32 parameter (read parameter, gradient, "
                                    "two moments; write three), SGD with momentum 20, at the elementwise bandwidth.",
                                    "foreach kernels move what the recorded per-parameter ops move, in chunks of "
                                    "multi_tensor_apply's tensor and block limits."],
                       sources=["PyTorch torch.optim docs: fused implementations (one kernel for the update)",
                                "aten/src/ATen/native/cuda/MultiTensorApply.cuh (foreach launch limits)"],
                       details={"policy": {"optimizer": "fused"}, "optimizer_s_before": before, "optimizer_s_after": after,
                                "step_s_before_model": rc.before.step_s, "step_s_after_model": rc.after.step_s})
