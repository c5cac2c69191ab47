"""A small rich progress bar for the measured steps (the harness may use it or not).

    with StepProgress(total_steps=10, console=Console(stderr=True)) as bar:
        bar.advance(step_s=0.41, loss=2.31)
"""
from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ccprof.units import fmt_s

__all__ = ["StepProgress"]


class StepProgress:
    """Progress over ``total_steps`` measured steps, showing the last step time and loss.

    A class because the bar holds state between steps. ``enabled=False`` (``--quiet``)
    makes every call a no-op.
    """

    def __init__(self, total_steps: int, console: Console | None = None, enabled: bool = True,
                 description: str = "measuring steps") -> None:
        self.enabled = enabled
        self.done = 0
        self._progress = None
        if enabled:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                      TimeElapsedColumn(), console=console, transient=False)
            self._task = self._progress.add_task(description, total=total_steps, info="")
            self._progress.start()

    def advance(self, step_s: float | None = None, loss: float | None = None) -> None:
        """One more step measured; ``step_s`` and ``loss`` are shown beside the bar."""
        self.done += 1
        if self._progress is None:
            return
        info = []
        if step_s is not None:
            info.append(f"step {fmt_s(step_s)}")
        if loss is not None and math.isfinite(loss):
            info.append(f"loss {loss:.4g}")
        self._progress.update(self._task, advance=1, info="  ".join(info))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
