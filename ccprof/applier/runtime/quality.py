"""The quality guard: did a tweak hurt the loss over the measured steps?"""
from __future__ import annotations

import math

__all__ = ["quality_guard", "LOSS_TOLERANCE_FRAC"]

# A tweak is harmful when its loss over the second half of the measured steps is, on average,
# more than 5% above the baseline's at the same steps. Why 5%: the baseline and the tweak run
# the same script, seed and batches, so the only differences are the tweak's. bf16 has an
# 8-bit significand (unit roundoff 2^-8 = 0.39%), and mixed precision training matches fp32
# loss curves (Micikevicius et al., ICLR 2018), so pure-numerics tweaks stay well inside ~12
# roundoffs over a few steps; a loss 5% higher after the same steps is a real setback that a
# few more steps would not be expected to hide.
LOSS_TOLERANCE_FRAC = 0.05


def quality_guard(baseline_losses: list[float], tweak_losses: list[float],
                  tolerance_frac: float = LOSS_TOLERANCE_FRAC) -> tuple[bool, str]:
    """(harmful?, reason with the numbers) for a tweak's losses against the baseline's.

    Harmful: a NaN/inf loss where the baseline was finite, or the mean loss over the second
    half of the common steps more than ``tolerance_frac`` above the baseline's (relative to
    |baseline|). Steps are paired from the first measured one.
    Example: ``quality_guard([2.0, 1.8, 1.6, 1.5], [2.0, 1.9, 1.8, 1.75])`` -> (True, "...").
    """
    if not baseline_losses or not tweak_losses:
        return False, "no losses to compare (the script reported none)"
    for i, v in enumerate(tweak_losses):
        if not math.isfinite(v):
            b = baseline_losses[i] if i < len(baseline_losses) else None
            if b is not None and not math.isfinite(b):
                return False, f"loss is {v} at step {i + 1}, as in the baseline; cannot judge"
            return True, (f"loss became {v} at measured step {i + 1} (baseline {b:.4g} there)" if b is not None
                          else f"loss became {v} at measured step {i + 1}")
    n = min(len(baseline_losses), len(tweak_losses))
    base, tw = baseline_losses[:n], tweak_losses[:n]
    start = n // 2
    if not all(math.isfinite(b) for b in base[start:]):
        return False, "baseline loss is not finite over the compared steps; cannot judge"
    b_mean = sum(base[start:]) / (n - start)
    t_mean = sum(tw[start:]) / (n - start)
    delta = t_mean - b_mean
    rel = delta / abs(b_mean) if b_mean else (math.inf if delta > 0 else 0.0)
    steps = f"steps {start + 1}-{n}" if n - start > 1 else f"step {n}"
    text = (f"mean loss over {steps}: {t_mean:.4g} with the tweak vs {b_mean:.4g} baseline "
            f"({delta:+.4g}, {rel:+.1%}; tolerance +{tolerance_frac:.0%})")
    return rel > tolerance_frac, text
