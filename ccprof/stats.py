"""Robust statistics of repeated measurements, in one place: the profiler's host figures, the
cost model's band, ``compare`` and ``--verify`` all say "median, and how sure" the same way.

    >>> m = median_ci([1.0, 1.1, 0.9, 1.0, 5.0])
    >>> (m.median, m.lo, m.hi)
    (1.0, 0.9, 5.0)

``median_ci`` is the order-statistic confidence interval of the median (distribution-free:
Conover, *Practical Nonparametric Statistics*, 3rd ed., 1999, section 3.2). With five values or
fewer it is the whole range. ``noise_frac`` is the robust relative spread of a sample
(1.4826 x the median absolute deviation / the median: a normal's sigma, unmoved by outliers).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = ["Spread", "median_ci", "noise_frac", "Z95"]

Z95 = 1.96          # two-sided 95% of a normal distribution


@dataclass(frozen=True)
class Spread:
    """A median with its 95% confidence interval, over ``n`` values."""
    median: float
    lo: float
    hi: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0

    @property
    def rel_half_width(self) -> float:
        """Half the interval as a share of the median (0 when the median is 0)."""
        return self.half_width / abs(self.median) if self.median else 0.0


def _ci_rank(n: int) -> int:
    """The 1-based rank k of the lower end: the largest k with P(Binomial(n, 1/2) < k) <= 2.5%
    (0 when none: the whole range, then)."""
    if n > 200:                                   # the normal approximation is exact enough
        return max(0, math.floor(n / 2.0 - Z95 * math.sqrt(n) / 2.0))
    k, below = 0, 0.0
    while k < n:
        below_next = below + math.comb(n, k) / 2.0 ** n     # P(X <= k)
        if below_next > 0.025:
            break
        below, k = below_next, k + 1
    return k


def median_ci(values: list[float]) -> Spread | None:
    """The median of ``values`` and its 95% confidence interval; None for no values.

    The interval is ``[x(k), x(n+1-k)]`` of the sorted sample, ``k`` from the binomial
    distribution of ranks (exact to n = 200, the normal approximation above); with too few
    values for 95% (n <= 5) it is the whole range.
    """
    xs = sorted(float(v) for v in values if v is not None and math.isfinite(v))
    n = len(xs)
    if not n:
        return None
    med = statistics.median(xs)
    k = _ci_rank(n)
    if k < 1:
        return Spread(med, xs[0], xs[-1], n)
    return Spread(med, xs[k - 1], xs[n - k], n)


def noise_frac(values: list[float]) -> float | None:
    """Robust relative spread: 1.4826 x median absolute deviation / median (None below 3 values)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(xs) < 3:
        return None
    med = statistics.median(xs)
    mad = statistics.median(abs(x - med) for x in xs)
    return 1.4826 * mad / med if med else None
