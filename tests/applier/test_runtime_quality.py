"""quality_guard: NaN/inf or a clearly worse loss marks a tweak harmful, with the numbers."""
from __future__ import annotations

import math

from ccprof.applier.runtime import LOSS_TOLERANCE_FRAC, quality_guard


def test_same_or_slightly_different_losses_are_fine():
    base = [2.0, 1.8, 1.6, 1.5]
    harmful, why = quality_guard(base, base)
    assert not harmful and "+0.0%" in why
    # bf16-like noise: +1% on the last two steps (mean 1.55 -> 1.5655)
    harmful, why = quality_guard(base, [2.0, 1.8, 1.616, 1.515])
    assert not harmful and "+1.0%" in why


def test_clearly_worse_loss_is_harmful_with_numbers():
    # last half: baseline mean (1.6 + 1.5) / 2 = 1.55; tweak (1.8 + 1.75) / 2 = 1.775 -> +14.5%
    harmful, why = quality_guard([2.0, 1.8, 1.6, 1.5], [2.0, 1.9, 1.8, 1.75])
    assert harmful and "1.775" in why and "1.55" in why and "+14.5%" in why
    assert f"+{LOSS_TOLERANCE_FRAC:.0%}" in why


def test_nan_or_inf_is_harmful_unless_baseline_too():
    harmful, why = quality_guard([2.0, 1.9, 1.8], [2.0, math.nan, 1.8])
    assert harmful and "nan at measured step 2" in why and "1.9" in why
    harmful, why = quality_guard([2.0, math.inf], [2.0, math.inf])
    assert not harmful and "cannot judge" in why


def test_lower_loss_and_missing_losses():
    assert quality_guard([2.0, 1.8], [1.5, 1.2]) == (False, quality_guard([2.0, 1.8], [1.5, 1.2])[1])
    harmful, why = quality_guard([], [1.0])
    assert not harmful and "no losses" in why
    harmful, why = quality_guard([2.0, 1.8, 1.6], [2.0, 1.8])        # paired over common steps
    assert not harmful and "step 2" in why
