"""batch_size: fill the memory headroom with a larger batch to amortize fixed per-step costs."""
from __future__ import annotations

from dataclasses import replace

from ccprof.advisors import constants as C
from ccprof.advisors._common import batch_size, fmt_bytes, fmt_pct, fmt_s, gpu_spec, ledger, make_advice, recost
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import BatchSizeOptions
from ccprof.hardware.edits import scale_batch

__all__ = ["advise_batch_size", "largest_batch"]

SNIPPET = """
loader = torch.utils.data.DataLoader(dataset, batch_size={b}, shuffle=True)
# scale the learning rate with the batch (linear rule, with warm-up): lr = base_lr * {b} / {b0}
"""


def largest_batch(profile: Profile, budget_bytes: int) -> int:
    """The largest batch whose peak fits ``budget_bytes``; activations and temporaries
    (``other_bytes``) scale with the batch, model state does not.

    Example: peak 1000 = state 400 + activations 500 + other 100 at batch 8 (75/sample),
    budget 2000: (2000 - 400) // 75 = 21.
    """
    b = batch_size(profile) or 0
    led = ledger(profile)
    var = led.act + led.other
    if not b or var <= 0:
        return b
    return int((budget_bytes - (led.peak - var)) // (var / b))


@register("batch_size")
def advise_batch_size(profile: Profile, ctx: AdviceContext) -> Advice:
    """Per-sample time at the larger batch, re-costed: fixed per-step work is amortized and GEMMs
    fill more of the GPU."""
    b = batch_size(profile)
    spec = gpu_spec(profile, ctx)
    led = ledger(profile)
    if not b:
        return make_advice("batch_size", "not_applicable", profile, ctx, confidence="low",
                           snippet=SNIPPET.format(b=64, b0=32), rationale="The batch size was not seen.")
    if spec.memory_bytes is None:
        return make_advice("batch_size", "not_applicable", profile, ctx, confidence="low",
                           snippet=SNIPPET.format(b=2 * b, b0=b),
                           rationale="The target GPU's memory is unknown (CPU run, no catalog entry); pass --gpu.")
    budget = int(C.MEMORY_FULL_FRAC * spec.memory_bytes)
    used = led.peak / spec.memory_bytes
    nb = min(largest_batch(profile, budget), C.BATCH_MAX_MULTIPLE * b)
    if used >= 0.8 * C.MEMORY_FULL_FRAC or nb < 2 * b and nb <= b:
        return make_advice("batch_size", "already_applied" if used >= 0.5 else "not_applicable", profile, ctx,
                           confidence="medium", snippet=SNIPPET.format(b=b, b0=b),
                           rationale=(f"The peak of {fmt_bytes(led.peak)} already uses {fmt_pct(used)} of the "
                                      f"{fmt_bytes(spec.memory_bytes)} on {spec.name}: no headroom for a larger batch."))
    util = profile.gpu.mean_sm_util_pct if profile.gpu else None
    peak_after = int(led.peak + (led.act + led.other) * (nb / b - 1))
    k = nb / b
    d = profile.data
    # a batch k times as large takes k times as long to make: its band too
    bigger = replace(profile, data=replace(d, batch_s=d.batch_s * k,
                                           batch_s_lo=d.batch_s_lo * k if d.batch_s_lo is not None else None,
                                           batch_s_hi=d.batch_s_hi * k if d.batch_s_hi is not None else None,
                                           batch_bytes=int((d.batch_bytes or 0) * k) or None)) \
        if d.batch_s else profile
    rc = recost(profile, ctx, ops=scale_batch(profile.ops, k), profile_after=bigger, spec=spec)
    per_before = rc.before.step_s / b
    per_after = rc.after.step_s / nb
    frac = 1 - per_after / per_before if per_before > 0 else 0.0
    if frac <= 0.005:
        return make_advice("batch_size", "not_applicable", profile, ctx, confidence="medium",
                           snippet=SNIPPET.format(b=nb, b0=b),
                           rationale=(f"Batch {nb} (from {b}) would fit {spec.name}, but the step grows with it: "
                                      f"{fmt_s(rc.before.step_s)} -> {fmt_s(rc.after.step_s)} ({fmt_s(per_before)} -> "
                                      f"{fmt_s(per_after)} per sample): nothing fixed per step left to amortize."),
                           details={"batch_after": nb, "batch_before": b})
    rationale = (f"The peak of {fmt_bytes(led.peak)} uses {fmt_pct(used)} of the {fmt_bytes(spec.memory_bytes)} on "
                 f"{spec.name}. Activations and temporaries are {fmt_bytes((led.act + led.other) / b)} per sample, so batch {nb} (from {b}) fits "
                 f"within {fmt_pct(C.MEMORY_FULL_FRAC)} (peak {fmt_bytes(peak_after)}). Re-costed at batch {nb} (every "
                 f"op's batch dimension scaled, the optimizer step and per-step host work unchanged, GEMMs "
                 f"re-tiled): {rc.says()}, i.e. {fmt_s(per_before)} -> {fmt_s(per_after)} per sample, "
                 f"{fmt_pct(frac)} less time for the same samples"
                 + (f"; the GPU averaged {util:.0f}% utilization" if util is not None else "")
                 + ". A larger batch changes optimization: scale the learning rate and check convergence.")
    return make_advice("batch_size", "recommended", profile, ctx, confidence="low", time_saved_frac=frac,
                       memory_saved_bytes=led.peak - peak_after, peak_bytes_after=peak_after,
                       step_s_after=None, rationale=rationale, snippet=SNIPPET.format(b=nb, b0=b),
                       options=BatchSizeOptions(batch_size=nb),
                       assumptions=["What grows with the batch is read from each op's shapes (tensors of a "
                                    "parameter's shape and the optimizer step stay); the step is costed again.",
                                    "The run keeps its number of samples (fewer steps at the larger batch)."],
                       sources=["PyTorch TensorBoard profiler plugin (pytorch/kineto tb_plugin) recommendations: GPU utilization < 50% -> larger batch",
                                "Goyal et al. 2017, linear learning-rate scaling with warm-up"],
                       details={"batch_after": nb, "batch_before": b, "per_sample_s_before": per_before,
                                "per_sample_s_after": per_after, "step_s_before_model": rc.before.step_s,
                                "step_s_after_model": rc.after.step_s, "time_scope": "run",
                                "step_s_ratio": rc.after.step_s / rc.before.step_s if rc.before.step_s else 1.0})
