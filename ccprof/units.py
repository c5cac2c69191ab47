"""Number formatting with units, in one place: every figure ccprof prints goes through here,
the report's tables and the advisors' sentences alike.

Bytes are binary (KiB, MiB, GiB: powers of 1024), times pick the unit that keeps 3
significant figures, MFU and other fractions are percents, dollars keep two decimals from
$1 up and two significant digits below it ($0.0042), so a cheap step never reads "$0.00".

Tables write a missing figure as ``MISSING`` ("—"); sentences pass ``missing="unknown"``.
``fmt_pct(x, digits=None)`` is the prose form: whole percents from 10% up ("61%"), one
decimal below ("4.2%").
"""
from __future__ import annotations

import math

__all__ = ["fmt_bytes", "fmt_s", "fmt_usd", "fmt_pct", "fmt_flops", "fmt_count",
           "fmt_rate", "fmt_signed_pct", "fmt_delta_bytes", "fmt_delta_usd", "MISSING"]

MISSING = "—"

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _bad(x: object) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def _sig3(x: float) -> str:
    """Three significant figures without exponent: 1.23, 12.3, 123."""
    ax = abs(x)
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_bytes(n: int | float | None, missing: str = MISSING) -> str:
    """``fmt_bytes(3 * 2**30) == "3.00 GiB"``; binary units, 3 significant figures."""
    if _bad(n):
        return missing
    sign = "-" if n < 0 else ""
    x = float(abs(n))
    for unit in _BINARY_UNITS:
        if x < 1024 or unit == _BINARY_UNITS[-1]:
            if unit == "B":
                return f"{sign}{int(x)} B"
            return f"{sign}{_sig3(x)} {unit}"
        x /= 1024
    return MISSING  # unreachable


def fmt_delta_bytes(n: int | float | None) -> str:
    """A signed byte change: ``+1.00 GiB`` / ``-512 MiB``."""
    if _bad(n):
        return MISSING
    return ("+" if n > 0 else "") + fmt_bytes(n)


def fmt_s(s: float | None, missing: str = MISSING) -> str:
    """Seconds in the unit that reads best: ``0.0123 -> "12.3 ms"``, ``5400 -> "1.50 h"``."""
    if _bad(s):
        return missing
    sign = "-" if s < 0 else ""
    x = abs(float(s))
    if x == 0:
        return "0 s"
    if x < 1e-3:
        return f"{sign}{_sig3(x * 1e6)} µs"
    if x < 1:
        return f"{sign}{_sig3(x * 1e3)} ms"
    if x < 120:
        return f"{sign}{_sig3(x)} s"
    if x < 2 * 3600:
        return f"{sign}{_sig3(x / 60)} min"
    if x < 2 * 86400:
        return f"{sign}{_sig3(x / 3600)} h"
    return f"{sign}{_sig3(x / 86400)} d"


def fmt_usd(usd: float | None, missing: str = MISSING) -> str:
    """Dollars: ``1234.5 -> "$1,234.50"``, ``0.3712 -> "$0.37"``, ``0.004217 -> "$0.0042"``."""
    if _bad(usd):
        return missing
    sign = "-" if usd < 0 else ""
    x = abs(float(usd))
    if x == 0:
        return "$0.00"
    if x >= 0.995:
        return f"{sign}${x:,.2f}"
    # two significant digits below a dollar
    decimals = max(2, 1 - math.floor(math.log10(x)))
    return f"{sign}${x:.{decimals}f}"


def fmt_delta_usd(usd: float | None) -> str:
    """A signed dollar change: ``+$1.20`` / ``-$0.0031``."""
    if _bad(usd):
        return MISSING
    return ("+" if usd > 0 else "") + fmt_usd(usd)


def fmt_pct(frac: float | None, digits: int | None = 1, missing: str = MISSING) -> str:
    """A fraction as a percent: ``0.4231 -> "42.3%"``; ``digits=None``: ``"42%"``, ``"4.2%"``."""
    if _bad(frac):
        return missing
    p = frac * 100
    if digits is None:
        digits = 0 if abs(p) >= 10 or p == 0 else 1
    return f"{p:.{digits}f}%"


def fmt_signed_pct(frac: float | None, digits: int = 1) -> str:
    """A signed fraction as a percent change: ``-0.25 -> "-25.0%"``."""
    if _bad(frac):
        return MISSING
    return f"{frac * 100:+.{digits}f}%"


_SI = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _si(x: float) -> str:
    ax = abs(x)
    for scale, prefix in _SI:
        if ax >= scale:
            return f"{_sig3(x / scale)} {prefix}"
    return f"{_sig3(x) if ax < 1000 and x != int(x) else int(x)} "


def fmt_flops(flops: int | float | None) -> str:
    """FLOP counts in SI units: ``1.5e12 -> "1.50 TFLOP"``."""
    if _bad(flops):
        return MISSING
    return _si(float(flops)) + "FLOP"


def fmt_rate(per_s: float | None, unit: str) -> str:
    """A rate in SI units: ``fmt_rate(3.1e14, "FLOP/s") == "310 TFLOP/s"``."""
    if _bad(per_s):
        return MISSING
    return _si(float(per_s)) + unit


def fmt_count(n: int | float | None, missing: str = MISSING) -> str:
    """Parameter-style counts: ``6_738_415_616 -> "6.74B"``, ``1234 -> "1,234"``."""
    if _bad(n):
        return missing
    x = float(n)
    ax = abs(x)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if ax >= scale:
            return f"{_sig3(x / scale)}{suffix}"
    return f"{int(round(x)):,}"
