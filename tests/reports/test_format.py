"""Units in the report: binary bytes, percent MFU, dollars with two significant decimals."""
import math

from hypothesis import given
from hypothesis import strategies as st

from ccprof.reports._format import (
    MISSING,
    fmt_bytes,
    fmt_count,
    fmt_delta_usd,
    fmt_flops,
    fmt_pct,
    fmt_s,
    fmt_usd,
)


def test_bytes_are_binary():
    assert fmt_bytes(512) == "512 B"
    assert fmt_bytes(1536) == "1.50 KiB"            # 1536 / 1024
    assert fmt_bytes(3 * 2**30) == "3.00 GiB"
    assert fmt_bytes(80 * 10**9) == "74.5 GiB"      # an "80 GB" card is 74.5 GiB
    assert fmt_bytes(-2**20) == "-1.00 MiB"
    assert fmt_bytes(None) == MISSING


def test_seconds_pick_a_readable_unit():
    assert fmt_s(0.0123) == "12.3 ms"
    assert fmt_s(4.2e-5) == "42.0 µs"
    assert fmt_s(1.122) == "1.12 s"
    assert fmt_s(5400) == "90.0 min"
    assert fmt_s(6.23 * 3600) == "6.23 h"
    assert fmt_s(float("nan")) == MISSING


def test_dollars_two_significant_decimals():
    assert fmt_usd(1234.5) == "$1,234.50"
    assert fmt_usd(21.3827) == "$21.38"
    assert fmt_usd(0.3712) == "$0.37"
    assert fmt_usd(0.0010691) == "$0.0011"           # a cheap step never reads $0.00
    assert fmt_usd(0.004217) == "$0.0042"
    assert fmt_usd(0) == "$0.00"
    assert fmt_delta_usd(-12.556) == "-$12.56"
    assert fmt_delta_usd(5.99) == "+$5.99"


def test_mfu_is_a_percent_and_flops_are_si():
    assert fmt_pct(0.394) == "39.4%"
    assert fmt_flops(8.376e12) == "8.38 TFLOP"
    assert fmt_count(116_925_440) == "117M"
    assert fmt_count(8522) == "8,522"


@given(st.floats(min_value=1e-9, max_value=1e7, allow_nan=False))
def test_small_dollar_amounts_keep_two_significant_digits(usd):
    text = fmt_usd(usd)
    value = float(text.lstrip("$").replace(",", ""))
    assert value > 0                                 # never rounds to $0.00
    assert math.isclose(value, usd, rel_tol=0.06, abs_tol=0.005)
