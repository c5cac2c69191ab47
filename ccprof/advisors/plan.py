"""The combined plan: apply the recommended tweaks in sequence through the time and memory
model, skipping conflicts, and price the run before and after.

Effects compound, they are not added: tweaks that change how the GPU runs the step
(mixed_precision, tf32, compile, fused_optimizer: a ``policy`` in their details) are costed
together again by the cost model, so compile's fusion is priced on the bf16 step autocast
leaves; other step-scoped tweaks scale the step time, run-scoped ones (finetune,
early_stopping, data_curation, warm_start, batch_size) scale the number of steps, memory
savings lower the peak, and the freed memory is offered to ``batch_size`` again at the end
(checkpointing frees memory -> a larger batch). ``right_size_gpu`` prices the result.
"""
from __future__ import annotations

from dataclasses import replace

from ccprof.advisors._common import fmt_bytes, gpu_spec, recost, run_price
from ccprof.advisors._registry import ADVISORS
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice, Plan, PlanStep
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import TWEAKS, conflict
from ccprof.hardware.projection import peak_budget_bytes, reserved_at

__all__ = ["build_plan"]

# A plan is what a team can adopt and get the same model, faster: a tweak that may cost
# accuracy enters it only when its advisor is at least moderately sure (LoRA on a
# pretrained model, yes; pruning, distillation or LoRA on random weights, not by default).
# Verify runs showed why: LoRA on a from-scratch GPT made the loss 10% worse in 7 steps.
RISKS_NEEDING_CONFIDENCE = ("accuracy",)


def _conflict(tweak: str, chosen: list[str]) -> tuple[str, str] | None:
    for c in chosen:
        why = conflict(tweak, c)
        if why:
            return c, why
    return None


def _with_peak(profile: Profile, peak: int, act: int) -> Profile:
    """The profile as if its tweaks had brought the tensors' peak to ``peak`` and activations to ``act``;
    a dry run's reserved peak moves by the same bytes (the allocator's overhead over the tensors, as
    traced, is assumed unchanged, as ``projection.memory_fit_for`` assumes for a tweak's peak)."""
    m = profile.memory
    reserved = reserved_at(m.reserved_peak_bytes, peak, m.peak_bytes) if m.reserved_peak_bytes else m.reserved_peak_bytes
    return replace(profile, memory=replace(m, peak_bytes=peak, activations_bytes=act, reserved_peak_bytes=reserved))


def build_plan(profile: Profile, ctx: AdviceContext, advice: list[Advice]) -> Plan:
    """A Plan over the ranked ``advice``: each step's step time, peak and run dollars.

    Tweaks that only cost time (checkpointing) enter the plan when the peak does not fit the
    target GPU, or when the memory they free lets ``batch_size`` recover more than they cost.
    Example: mixed_precision (-40% step) then data_curation (-10% steps): usd x 0.6 x 0.9.
    DDP over n visible GPUs counts as a step-scoped saving: the advisor assumes all n are paid
    for either way, so the dollars fall with the wall time.
    """
    price = run_price(profile, ctx)
    spec = gpu_spec(profile, ctx)
    # the largest tensor peak the one fit rule lets through (projection.peak_budget_bytes): peak <= budget is
    # exactly memory_fit_for(profile, spec, peak).fits, the projection's and every advisor's verdict
    budget = peak_budget_bytes(profile, spec) if spec.memory_bytes else None
    step_s, peak, steps_frac, usd_factor = price.step_s, profile.memory.peak_bytes, 1.0, 1.0
    policy: dict = {}
    policy_factor = 1.0
    act = profile.memory.activations_bytes
    chosen: list[str] = []
    factors: list[float] = []           # the run's cost after each plan step / before (known without a run size)
    out: list[PlanStep] = []
    conflicts: list[str] = []
    rec = [a for a in advice if a.status == "recommended"]
    by = {a.tweak: a for a in rec}

    # evaluation between steps (profile.eval) is priced in the run but no tweak here changes it
    eval_usd = profile.cost.usd_eval_run if (profile.cost is not None and price.priced
                                             and ctx.run_steps is None and ctx.usd_per_hour is None) else 0.0

    def usd_now() -> float:
        return price.usd_run * usd_factor + eval_usd

    def apply(a: Advice, note: str = "") -> None:
        nonlocal step_s, peak, steps_frac, usd_factor, act, policy_factor
        p = a.projected
        scope = a.details.get("time_scope", "run" if TWEAKS[a.tweak].run_scoped else "step")
        frac = p.time_saved_frac if a.status == "recommended" else float(a.details.get("time_saved_frac", 0.0))
        if a.tweak == "right_size_gpu":
            usd_factor *= max(0.0, 1 - p.cost_saved_frac)
        elif a.details.get("policy") and profile.ops:
            # re-cost the step with every policy change chosen so far, together
            policy.update(a.details["policy"])
            rc = recost(profile, ctx, policy=policy, spec=spec)
            new = rc.after.step_s / rc.before.step_s if rc.before.step_s else 1.0
            step_s *= new / policy_factor
            usd_factor *= new / policy_factor
            policy_factor = new
        elif scope == "run":
            steps_frac *= 1 - frac
            usd_factor *= 1 - frac
        else:
            step_s *= 1 - frac
            usd_factor *= 1 - frac
        if a.tweak in ("checkpointing", "mixed_precision") and "activations_after_bytes" in a.details and act:
            # both act on activations: an earlier tweak that shrank them shrinks this saving too
            scale = act / profile.memory.activations_bytes
            peak -= int(p.memory_saved_bytes * scale)
            act *= a.details["activations_after_bytes"] / profile.memory.activations_bytes
        else:
            peak -= p.memory_saved_bytes
        chosen.append(a.tweak)
        factors.append(usd_factor)
        out.append(PlanStep(a.tweak, step_s, int(peak), usd_now(), note))

    fits = budget is None or peak <= budget
    for a in rec:
        if TWEAKS[a.tweak].plan_last:
            continue
        if a.risk in RISKS_NEEDING_CONFIDENCE and a.confidence == "low":
            conflicts.append(f"{a.tweak} left out of the plan: risk {a.risk} at low confidence; "
                             "weigh it on its own")
            continue
        c = _conflict(a.tweak, chosen)
        if c:
            conflicts.append(f"{a.tweak} vs {c[0]}: {c[1]}")
            continue
        helps = a.projected.usd_saved > 0 or a.projected.time_saved_frac > 0 or a.projected.cost_saved_frac > 0
        needed = not fits and a.projected.memory_saved_bytes > 0
        if helps or needed:
            apply(a, "needed to fit" if needed and not helps else "")
            fits = budget is None or peak <= budget
    # Freed memory -> larger batch (re-advised on the lighter profile).
    if "batch_size" in by or (budget is not None and peak < profile.memory.peak_bytes):
        # checkpointing alone only costs time when memory fits; its projection is still in
        # the advice's details, for pairing with a larger batch
        ck = by.get("checkpointing") or next((a for a in advice if a.tweak == "checkpointing"
                                              and a.details.get("peak_bytes_after")), None)
        light = _with_peak(profile, int(peak), int(act))
        bs = ADVISORS["batch_size"](light, ctx)
        if ck is not None and "checkpointing" not in chosen and bs.status == "recommended":
            ratio = ck.details.get("activations_after_bytes", act) / max(1, profile.memory.activations_bytes)
            lighter = _with_peak(light, int(peak - act * (1 - ratio)), int(act * ratio))
            bs_ck = ADVISORS["batch_size"](lighter, ctx)
            ck_frac = ck.projected.time_saved_frac if ck.status == "recommended" else float(
                ck.details.get("time_saved_frac", 0.0))
            gain_ck = (1 - ck_frac) * (1 - bs_ck.projected.time_saved_frac)
            if bs_ck.status == "recommended" and gain_ck < 1 - bs.projected.time_saved_frac:
                apply(ck, "frees memory for a larger batch")
                bs = bs_ck
        c = _conflict("batch_size", chosen)
        if bs.status == "recommended" and bs.projected.time_saved_frac > 0:
            if c:
                conflicts.append(f"batch_size vs {c[0]}: {c[1]}")
            else:
                apply(bs, f"batch {bs.details.get('batch_before')} -> {bs.details.get('batch_after')} in "
                          f"{fmt_bytes(max(0, (budget or 0) - peak))} of headroom")
    if "right_size_gpu" in by:
        rs = by["right_size_gpu"]
        if "batch_size" in chosen:
            i = [s.tweak for s in out].index("batch_size")
            before_bs = factors[i - 1] if i else 1.0
            bs_share = 1 - factors[i] / before_bs if before_bs else 0.0
            if rs.projected.cost_saved_frac > bs_share:
                # undo the batch step: the cheaper GPU saves more than the larger batch
                prev = out[i - 1] if i else None
                step_s = prev.step_s if prev else price.step_s
                peak = prev.peak_bytes if prev else profile.memory.peak_bytes
                usd_factor = before_bs
                out.pop(i)
                factors.pop(i)
                chosen.remove("batch_size")
                conflicts.append(f"batch_size vs right_size_gpu: {conflict('batch_size', 'right_size_gpu')}; "
                                 "the cheaper GPU saves more")
                apply(rs, "priced on the cheaper GPU")
            else:
                conflicts.append(f"right_size_gpu vs batch_size: {conflict('batch_size', 'right_size_gpu')}")
        else:
            apply(rs, "priced on the cheaper GPU")
    total = price.usd_run + eval_usd
    cost_after = (price.usd_run * usd_factor + eval_usd) / total if total > 0 else usd_factor
    return Plan(tweaks=chosen, steps=out, usd_run_before=total, usd_run_after=usd_now(),
                step_s_before=price.step_s, step_s_after=step_s,
                peak_bytes_before=profile.memory.peak_bytes, peak_bytes_after=int(peak),
                conflicts=conflicts, gpu=price.gpu, cost_frac_after=float(round(cost_after, 6)))
