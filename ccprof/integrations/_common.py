"""What both Trainer callbacks do with a finished measurement: write it and name its figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ccprof.integrations._live import LiveProfile, headline

__all__ = ["publish"]


def publish(live: LiveProfile, out_dir: str | Path | None) -> dict[str, float]:
    """Write profile.json/advice.json/report.html under ``out_dir`` (None: nothing written) and
    return the headline figures for the Trainer's loggers; ccprof's own failure is kept in
    ``live.note``, never raised into the training."""
    try:
        if out_dir is not None:
            live.write(out_dir)
        return headline(live.profile, live.advice)
    except Exception as exc:
        live.note = f"ccprof could not write its report ({type(exc).__name__}: {exc})"
        return {}


def number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None
