"""batch_size: fill the memory headroom with a larger batch to amortize fixed per-step costs."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import batch_size, clamp, fmt_bytes, fmt_pct, gpu_spec, ledger, make_advice
from ccprof.advisors._registry import register
from ccprof.advisors.advice import Advice
from ccprof.advisors.context import AdviceContext
from ccprof.profiler.profile import Profile

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
    """Per-sample time at the larger batch: the optimizer step (fixed per step) is amortized."""
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
    ph = profile.steps.phase_s
    total = sum(ph.values()) if ph else 0.0
    fixed = (ph.get("optimizer", 0.0) + ph.get("other", 0.0)) / total if total else 0.0
    util = profile.gpu.mean_sm_util_pct if profile.gpu else None
    # Per-sample time: (fixed + variable x nb/b) / nb vs (fixed + variable) / b.
    frac = clamp(fixed * (1 - b / nb))
    peak_after = int(led.peak + (led.act + led.other) * (nb / b - 1))
    rationale = (f"The peak of {fmt_bytes(led.peak)} uses {fmt_pct(used)} of the {fmt_bytes(spec.memory_bytes)} on "
                 f"{spec.name}. Activations and temporaries are {fmt_bytes((led.act + led.other) / b)} per sample, so batch {nb} (from {b}) fits "
                 f"within {fmt_pct(C.MEMORY_FULL_FRAC)} (peak {fmt_bytes(peak_after)}). The optimizer step and other fixed "
                 f"work ({fmt_pct(fixed)} of the step) are then paid once per {nb} samples: {fmt_pct(frac)} less time "
                 "per sample" + (f"; the GPU averaged {util:.0f}% utilization" if util is not None else "")
                 + ". A larger batch changes optimization: scale the learning rate and check convergence.")
    return make_advice("batch_size", "recommended", profile, ctx, confidence="low", time_saved_frac=frac,
                       memory_saved_bytes=led.peak - peak_after, peak_bytes_after=peak_after,
                       rationale=rationale, snippet=SNIPPET.format(b=nb, b0=b),
                       assumptions=["Forward/backward time scales with the batch; optimizer and other phases do not.",
                                    "The run keeps its number of samples (fewer steps at the larger batch)."],
                       sources=["PyTorch TensorBoard plugin: GPU utilization < 50% -> larger batch (FACTS.md)",
                                "Goyal et al. 2017, linear learning-rate scaling with warm-up"],
                       details={"batch_after": nb, "batch_before": b, "fixed_frac": fixed})
