"""The median and its 95% interval (order statistics), on recorded samples."""
from __future__ import annotations

import pytest

from ccprof.stats import median_ci, noise_frac


def test_the_interval_of_the_median_is_exact_order_statistics():
    # n = 10: P(Binomial(10, 1/2) <= 1) = 11/1024 <= 2.5% < P(<= 2) = 56/1024, so k = 2:
    # the interval is [x(2), x(9)] (97.9% coverage, the textbook's)
    s = median_ci([float(x) for x in range(1, 11)])
    assert (s.median, s.lo, s.hi, s.n) == (5.5, 2.0, 9.0, 10)
    # n = 30: k = 10, [x(10), x(21)]
    s = median_ci([float(x) for x in range(1, 31)])
    assert (s.lo, s.hi) == (10.0, 21.0)


def test_few_values_give_their_whole_range_and_none_give_none():
    s = median_ci([3.0, 1.0, 2.0])
    assert (s.median, s.lo, s.hi) == (2.0, 1.0, 3.0)
    assert median_ci([]) is None
    assert median_ci([float("nan")]) is None


def test_relative_half_width():
    s = median_ci([9.0, 10.0, 11.0])
    assert s.rel_half_width == pytest.approx(0.1)


def test_noise_frac_is_a_robust_sigma():
    # median 1.0, absolute deviations 0, 0.1, 0.1 -> MAD 0.1 -> 1.4826 x 0.1
    assert noise_frac([1.0, 1.1, 0.9]) == pytest.approx(0.14826)
    assert noise_frac([1.0, 2.0]) is None
