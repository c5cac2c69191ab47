"""The number formatters now live in ``ccprof.units`` (the advisors' sentences use them too);
re-exported here for older imports."""
from ccprof.units import (  # noqa: F401
    MISSING,
    __all__,  # noqa: F401
    fmt_bytes,
    fmt_count,
    fmt_delta_bytes,
    fmt_delta_usd,
    fmt_flops,
    fmt_pct,
    fmt_rate,
    fmt_s,
    fmt_signed_pct,
    fmt_usd,
)
