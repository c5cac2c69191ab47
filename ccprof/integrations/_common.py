"""What both Trainer callbacks do with a finished measurement: write it and name its figures."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ccprof.api import check_cost_options
from ccprof.integrations._live import LiveProfile, headline, main_script

__all__ = ["publish", "CallbackCore"]


class CallbackCore:
    """What both Trainer callbacks hold and do alike: their settings (checked when made), starting
    the measurement, and turning the finished one into the loggers' figures."""

    def __init__(self, steps: int = 5, warmup: int = 3, start: int = 0, out_dir: str | Path | None = "ccprof-report",
                 gpu: str | None = None, price: float | None = None, total_steps: int | None = None):
        check_cost_options(gpu, price)         # a wrong GPU id or price: now, not after the steps
        self.steps, self.warmup, self.start = steps, warmup, start
        self.out_dir, self.gpu, self.price, self.total_steps = out_dir, gpu, price, total_steps
        self.result: LiveProfile | None = None
        self.figures: dict[str, float] = {}
        self._published = False

    def _measure(self, planned: int | None) -> None:
        """Start measuring the training that follows; ``planned``: its optimizer steps (None: unknown)."""
        script = main_script()
        self.result = LiveProfile(steps=self.steps, warmup=self.warmup, skip=self.start, gpu=self.gpu,
                                  price=self.price, total_steps=planned, script=script,
                                  argv=sys.argv[1:] if script else None).start()

    def _write_figures(self) -> dict[str, float]:
        """Write the report and keep the headline figures that are numbers (``self.figures``)."""
        self._published = True
        figures = publish(self.result, self.out_dir)
        self.figures = {k: v for k, v in figures.items() if number(v) is not None}
        return self.figures


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
