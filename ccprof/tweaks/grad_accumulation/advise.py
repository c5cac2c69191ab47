"""grad_accumulation: reach the wanted batch with micro-batches that fit."""
from __future__ import annotations

import math

from ccprof.advisors._common import (
    batch_size,
    fmt_bytes,
    fmt_change,
    gpu_spec,
    ledger,
    make_advice,
    recost,
)
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import GradAccumulationOptions
from ccprof.hardware.edits import micro_batches, scale_batch
from ccprof.hardware.projection import FIT_SOURCES, memory_fit_for, peak_budget_bytes

__all__ = ["advise_grad_accumulation", "peak_bytes_at_batch", "micro_batch_plan"]

SNIPPET = """
accum_steps = {k}                      # micro-batch {m} x {k} = the batch of {b}
for i, (x, y) in enumerate(loader):    # the DataLoader now yields batch_size={m}
    loss = loss_fn(model(x), y) / accum_steps
    loss.backward()
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
"""


def _split(profile: Profile) -> tuple[int, int, int]:
    """(parameters + optimizer state, gradients, what scales with the batch) of the measured peak.

    The peak of a step whose gradients are freed between steps (``zero_grad()``, set_to_none
    since PyTorch 2.0, and the Hugging Face Trainer's ``model.zero_grad()``) comes at the start
    of backward, before any gradient exists: everything above parameters and optimizer state
    (activations, loss gradient, logits, temporaries) scales with the batch. The ledger's
    gradients are their steady-state size, not what the peak held; on examples/hf_trainer.py
    no gradient was alive at the peak.
    """
    led = ledger(profile)
    state = led.params + led.opt
    return state, led.grads, max(0, led.peak - state)


def peak_bytes_at_batch(profile: Profile, batch: int, accum_steps: int = 1) -> int:
    """Peak memory at another (micro-)batch, run whole or as one of ``accum_steps`` micro-batches.

    Parameters and optimizer state stay; the rest of the measured peak (activations, loss
    gradient, logits, temporaries: no gradient is alive yet at the start of backward) scales
    with the batch. With ``accum_steps`` >= 2 the first micro-batch's gradients stay alive
    through every later micro-batch's forward and backward, so all of them are added.

    Example: peak 2000 = params 400 + optimizer 800 + 800 that scales, gradients 400, batch 8
    -> batch 4 run whole: 1200 + 800 x 4/8 = 1600; micro-batch 4 of 2: 1600 + 400 = 2000.
    """
    b = batch_size(profile)
    led = ledger(profile)
    if not b:
        return led.peak
    state, grads, var = _split(profile)
    return int(state + (grads if accum_steps >= 2 else 0) + var * batch / b)


def micro_batch_plan(profile: Profile, wanted_batch: int, budget_bytes: int) -> dict:
    """Largest micro-batch whose peak fits ``budget_bytes`` (``projection.peak_budget_bytes``: the one fit
    rule's largest tensor peak), and the accumulation steps.

    Fixed: parameters, optimizer state and the accumulated gradients; per sample: the rest
    of the measured peak over the measured batch (see ``peak_bytes_at_batch``).
    """
    b = batch_size(profile) or 1
    state, grads, var = _split(profile)
    fixed = state + grads
    per_sample = var / b if b else 0
    if per_sample <= 0 or budget_bytes <= fixed:
        return {"micro_batch": 0, "accum_steps": 0, "fixed_bytes": fixed, "per_sample_bytes": per_sample}
    m = max(0, min(wanted_batch, int((budget_bytes - fixed) // per_sample)))
    k = math.ceil(wanted_batch / m) if m else 0
    if m and k:
        m = math.ceil(wanted_batch / k)          # even split: same number of steps, smaller peak
    return {"micro_batch": m, "accum_steps": k, "fixed_bytes": fixed, "per_sample_bytes": per_sample,
            "peak_bytes_after": peak_bytes_at_batch(profile, m, k) if m else None}


# torch.optim.LBFGS.step(closure): "A closure that reevaluates the model and returns the loss",
# called up to max_eval times (default max_iter * 1.25) per step.
LBFGS_SOURCE = "PyTorch torch.optim.LBFGS docs (step(closure): the closure re-evaluates the model)"
CLOSURE_CLASSES = ("LBFGS",)            # torch.optim optimizers whose step() requires a closure


def _closure_optimizer(profile: Profile) -> str:
    """Why accumulation does not apply to a closure optimizer's step ("" when the step takes no closure).

    Backward passes inside ``optimizer.step(closure)`` re-evaluate the same batch at new
    parameters, each after ``zero_grad()``: they are a line search's function evaluations, not
    micro-batches, and summing their gradients would be wrong. A quasi-Newton method such as LBFGS
    also wants the full (or a fixed large) batch: its curvature pairs compare gradients of one
    objective (Nocedal & Wright, Numerical Optimization, ch. 7).
    """
    opts = profile.optimizer.optimizers if profile.optimizer else []
    cls = next((o.class_ for o in opts if o.class_ in CLOSURE_CLASSES), None)
    n = profile.steps.closure_backwards
    if not n and cls is None:
        return ""
    who = f"{cls}.step(closure)" if cls else "optimizer.step(closure)"
    seen = (f"{n} backward passes per optimizer step ran inside {who}" if n
            else f"{who} runs its backward passes inside the step")
    return (f"{seen}: they are the closure's re-evaluations of the same batch at new parameters, each after "
            "zero_grad(), not micro-batches whose gradients add up. Accumulating across them would mix gradients "
            "of different points; a closure optimizer such as LBFGS is a full-batch quasi-Newton method whose "
            "curvature estimates need one objective per step, so splitting its batch does not apply. If the batch "
            "does not fit, see checkpointing or a smaller model.")


@register("grad_accumulation")
def advise_grad_accumulation(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend accumulation when the wanted batch does not fit the target GPU."""
    b = batch_size(profile)
    wanted = ctx.wanted_batch_size or b
    snip = SNIPPET.format(k=2, m=max(1, (wanted or 2) // 2), b=wanted or 2)
    closure = _closure_optimizer(profile)
    if closure:
        return make_advice("grad_accumulation", "not_applicable", profile, ctx, confidence="high", snippet=snip,
                           rationale=closure, sources=[LBFGS_SOURCE])
    if profile.steps.micro_batches > 1 or profile.static.accumulation:
        return make_advice("grad_accumulation", "already_applied", profile, ctx, confidence="high", snippet=snip,
                           rationale=(f"The script already accumulates gradients ({profile.steps.micro_batches} "
                                      "backward passes per optimizer step)."))
    spec = gpu_spec(profile, ctx)
    led = ledger(profile)
    if not b or not wanted:
        return make_advice("grad_accumulation", "not_applicable", profile, ctx, confidence="low", snippet=snip,
                           rationale="The batch size was not seen, so activations cannot be scaled with it.")
    if spec.memory_bytes is None:
        return make_advice("grad_accumulation", "not_applicable", profile, ctx, confidence="low", snippet=snip,
                           rationale=("The target GPU's memory is unknown (CPU run, no catalog entry), so ccprof "
                                      "cannot tell whether the batch fits; pass --gpu."))
    # the one fit rule (the projection's and the report's); at the script's own batch, the step as profiled
    budget = peak_budget_bytes(profile, spec)
    peak_wanted = peak_bytes_at_batch(profile, wanted)
    fit_wanted = memory_fit_for(profile, spec) if wanted == b else memory_fit_for(profile, spec, peak_wanted)
    if fit_wanted.fits:
        return make_advice("grad_accumulation", "not_applicable", profile, ctx, confidence="high", snippet=snip,
                           rationale=(f"A batch of {wanted} needs {fmt_bytes(peak_wanted)} on {spec.name}: it "
                                      f"{fit_wanted.says()}. No need to accumulate."),
                           details={"peak_bytes_wanted": peak_wanted, "budget_bytes": budget,
                                    "memory_fit": fit_wanted.as_dict()})
    plan = micro_batch_plan(profile, wanted, budget)
    if not plan["micro_batch"]:
        return make_advice("grad_accumulation", "not_applicable", profile, ctx, confidence="medium", snippet=snip,
                           rationale=(f"Even a micro-batch of 1 does not fit: model state alone is "
                                      f"{fmt_bytes(plan['fixed_bytes'])} against a peak of at most {fmt_bytes(budget)} "
                                      f"that fits {spec.name} (the batch of {wanted}: {fit_wanted.says()}). "
                                      f"See checkpointing, lora or distributed (FSDP)."),
                           details={**plan, "budget_bytes": budget, "memory_fit": fit_wanted.as_dict()})
    m, k = plan["micro_batch"], plan["accum_steps"]
    fit_after = memory_fit_for(profile, spec, plan["peak_bytes_after"])
    state, grads, var = _split(profile)
    # the step at the wanted batch in one pass (if it fitted), and as k micro-batches of m
    whole = scale_batch(profile.ops, wanted / b)
    rc_whole = recost(profile, ctx, ops=whole, spec=spec)
    rc = recost(profile, ctx, ops=micro_batches(scale_batch(profile.ops, (m * k) / b), k), spec=spec)
    frac = 1 - rc.after.step_s / rc_whole.after.step_s if rc_whole.after.step_s else 0.0
    rationale = (f"The batch of {wanted} peaks at {fmt_bytes(peak_wanted)} (activations, logits and temporaries "
                 f"{fmt_bytes(var)} at batch {b}, {fmt_bytes(plan['per_sample_bytes'])} per sample; parameters and "
                 f"optimizer state {fmt_bytes(state)}): on {spec.name} it {fit_wanted.says()}. "
                 f"Micro-batches of {m} x {k} accumulation steps keep the batch and peak at "
                 f"{fmt_bytes(plan['peak_bytes_after'])} (the gradients, {fmt_bytes(grads)}, stay alive from the "
                 f"first micro-batch on): it {fit_after.says()}. Re-costed: the same work in {k} passes of smaller kernels, plus adding each "
                 f"micro-batch's weight gradients into .grad, takes {rc.after.step_s * 1e3:.1f} ms per step against "
                 f"{rc_whole.after.step_s * 1e3:.1f} ms in one pass on {spec.name}: {fmt_change(frac)}.")
    cost = -frac
    return make_advice("grad_accumulation", "recommended", profile, ctx, confidence="medium",
                       time_saved_frac=frac, memory_saved_bytes=led.peak - plan["peak_bytes_after"]
                       if wanted == b else peak_wanted - plan["peak_bytes_after"],
                       peak_bytes_after=plan["peak_bytes_after"], rationale=rationale,
                       snippet=SNIPPET.format(k=k, m=m, b=wanted), options=GradAccumulationOptions(steps=k),
                       assumptions=["The measured peak came at the start of backward, before any gradient "
                                    "existed (zero_grad() frees them between steps, PyTorch's default since 2.0): "
                                    "all of it above parameters and optimizer state scales linearly with the "
                                    "micro-batch. If your script keeps gradients between steps, the projection "
                                    "is high by up to the gradients' size times the micro-batch share.",
                                    "With accumulation the gradients are alive from the first micro-batch on: "
                                    "they are added in full.",
                                    "Time: each op's batch dimension scaled to the micro-batch, run k times, and "
                                    "the weight gradients added k-1 times (ccprof.hardware.edits.micro_batches)."],
                       sources=[*FIT_SOURCES, spec.spec_source],
                       details={**plan, "wanted_batch": wanted, "peak_bytes_wanted": peak_wanted, "budget_bytes": budget,
                                "memory_fit": fit_wanted.as_dict(), "memory_fit_after": fit_after.as_dict(),
                                "step_s_whole_model": rc_whole.after.step_s, "step_s_after_model": rc.after.step_s,
                                "step_s_ratio": rc.after.step_s / rc.before.step_s if rc.before.step_s else 1.0,
                                "time_cost_frac": cost})
