"""The one clock of the profiler: every time ccprof measures or waits on is read here.

Three readings, each for one kind of question:

- :func:`wall_s` -- seconds of a monotonic wall clock (``time.perf_counter``: the finest the
  platform has, never set back): step and phase times, deadlines, timeouts, samplers;
- :func:`cpu_s` -- CPU seconds of the calling thread (``time.thread_time``): the host work of a
  step or a batch, which another process's load does not add to (DESIGN: host time is CPU time);
- :func:`utc_now` -- the date and time, as a profile's Environment writes its start and finish
  (never subtracted: intervals come from :func:`wall_s`).

    >>> t0, c0 = wall_s(), cpu_s()
    >>> wall_s() >= t0 and cpu_s() >= c0
    True
"""
from __future__ import annotations

import datetime
import time

__all__ = ["wall_s", "cpu_s", "utc_now"]

wall_s = time.perf_counter          # monotonic wall seconds (intervals only)
cpu_s = time.thread_time            # CPU seconds of the calling thread


def utc_now() -> str:
    """Now, as a profile's Environment writes its start and finish: UTC ISO 8601, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
