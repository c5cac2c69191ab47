"""The Session's host side: the Python each phase runs (counted), each batch's making where it is
made (timed), and how many timed steps the spread needs.

What the cost model needs of the host is counted where it can be and timed only where it must:

- the Python of a step, in bytecodes by phase: the "python" pass (``pycount.PythonPass``), one
  step after the FLOP and memory steps, not timed; the aten ops and module calls come from the
  FLOP step. Counts repeat exactly from run to run;
- a batch's making, which only a clock can tell: ``DataLoader`` fetches (its dataset's
  ``__getitem__`` and ``collate_fn``) are timed in thread CPU time where they run: in the main
  process with ``num_workers=0``, inside each worker otherwise (forked workers inherit the
  timing and write to a file in the run's scratch folder; spawned workers do not, and the batch
  time is then probed in the main process). The fastest batch is kept (``session_data``);
- the host's speed: the speed probe (``ccprof.profiler.host.speed_probe``) beside every batch
  and at the end of the run, the fastest of all, against the reference host's, converts a
  batch's CPU time;
- timed steps go on past ``--steps`` while the median step's CPU time is unsure (its 95%
  interval wider than ``SPREAD_REL`` of it), up to ``EXTEND_MAX_FACTOR`` x the steps asked for
  and ``EXTEND_MAX_S`` seconds of extra steps.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import weakref
from typing import Any

from ccprof.profiler.clock import cpu_s, wall_s
from ccprof.profiler.host import speed_probe
from ccprof.stats import median_ci

# Timed steps go on while the 95% interval of the median step CPU time is wider than this share
# of it (ccprof's rule: the 3% run-to-run spread ccprof's projections are held to).
SPREAD_REL = 0.03
EXTEND_MAX_FACTOR = 2          # at most this many times the timed steps asked for
EXTEND_MAX_S = 10.0            # and at most this many seconds of extra steps
FETCH_PROBE_ROUNDS = 10        # the speed probe beside each batch made (~0.1 ms)
_FETCHERS = ("_MapDatasetFetcher", "_IterableDatasetFetcher")
_ACTIVE: weakref.ref | None = None       # the installed Session, for the one at-fork handler
_AT_FORK_REGISTERED = False


def _at_fork_in_child() -> None:
    session = _ACTIVE() if _ACTIVE is not None else None
    if session is not None:
        session._after_fork_in_child()


class HostClock:
    """Mixin of ``Session``: the batch clock and the step extension (state: ``host``)."""

    # False under a launcher (several ranks): each rank deciding on its own to time one more step
    # would leave the others waiting in that step's collective; every rank stops at the same step
    extend_steps: bool = True

    # ------------------------------------------------------------------ more steps
    def measured_enough(self) -> bool:
        """The passes ran and the timed steps asked for were measured (extra steps may follow)."""
        return (len(self.log.step_s) >= self.steps_wanted and self.log.index >= self.warmup + self.n_pass_steps
                and not self.measure.queue and self.measure.current is None)

    def _more_steps_needed(self) -> bool:
        """True while the median step's CPU time is unsure and the extension budget is not spent."""
        timed = len(self.log.step_s)
        if not self.extend_steps:
            return False
        if timed < self.steps_wanted or timed >= EXTEND_MAX_FACTOR * self.steps_wanted:
            return False
        if sum(self.log.step_s[self.steps_wanted:]) > EXTEND_MAX_S:
            return False
        if self.deadline is not None and wall_s() > self.deadline:
            return False
        spread = median_ci(self.log.step_cpu_s)
        return spread is not None and spread.n >= 3 and spread.rel_half_width > SPREAD_REL

    # ------------------------------------------------------------------ batch clock
    def _install_batch_clock(self) -> None:
        """Time every DataLoader fetch where it runs (main process, or a forked worker)."""
        from torch.utils.data._utils import (
            fetch as fetch_mod,  # here: torch is loaded; the fetchers are private, kept to one place
        )

        self.host.main_pid = os.getpid()
        if self.host.scratch_dir is None:
            self.host.own_scratch = tempfile.mkdtemp(prefix="ccprof-batches-")
            self.host.scratch_dir = self.host.own_scratch
        session = self
        for name in _FETCHERS:
            cls = getattr(fetch_mod, name, None)
            if cls is None or not hasattr(cls, "fetch"):
                continue
            orig = cls.fetch

            def fetch(fetcher, index, _orig=orig):
                t0, w0 = cpu_s(), wall_s()
                out = _orig(fetcher, index)
                session._on_fetch(id(getattr(fetcher, "dataset", None)), cpu_s() - t0, wall_s() - w0)
                return out

            fetch.__wrapped__ = orig
            self._patch(cls, "fetch", fetch)
        global _ACTIVE, _AT_FORK_REGISTERED
        _ACTIVE = weakref.ref(self)
        if not _AT_FORK_REGISTERED:           # one handler per process (it cannot be unregistered)
            os.register_at_fork(after_in_child=_at_fork_in_child)
            _AT_FORK_REGISTERED = True

    def _after_fork_in_child(self) -> None:
        """In a forked child (a DataLoader worker): none of ccprof's dispatch modes or tracing
        (they watch the main thread, and would slow the worker), and its own batch file."""
        self.host.worker_file = None
        try:
            from torch.utils._python_dispatch import (  # here: torch is loaded; private helpers, kept to one place
                _get_current_dispatch_mode,
                _pop_mode,
            )

            mine = {id(m) for m in self._own_modes()}
            while (m := _get_current_dispatch_mode()) is not None and id(m) in mine:
                _pop_mode()
        except Exception:
            pass
        if self.measure.name == "python":
            sys.settrace(None)             # the parent counts its own thread's bytecodes only

    def _own_modes(self) -> list[Any]:
        p = self.measure.current
        return [m for m in (getattr(p, "_counter", None), getattr(p, "_op_mode", None)) if m is not None]

    def _on_fetch(self, dataset_id: int, batch_cpu_s: float, batch_wall_s: float) -> None:
        # the speed probe beside each batch: where the batches are made, as often (the fastest
        # of all of them is this machine's speed; see HostInfo.probe_s)
        if os.getpid() == self.host.main_pid:
            # in the main process only the timed steps' fetches count (a pass's dispatch modes
            # or the first batches' warm-up would slow them)
            if self.clock.step_t0 is not None and self._timed_step() and self.measure.current is None:
                self.host.main_fetches.append((dataset_id, batch_cpu_s, batch_wall_s, speed_probe(FETCH_PROBE_ROUNDS)))
            return
        try:
            probe = speed_probe(FETCH_PROBE_ROUNDS)
            if self.host.worker_file is None:
                path = os.path.join(self.host.scratch_dir, f"batches.{os.getpid()}")
                self.host.worker_file = open(path, "a", buffering=1)
            self.host.worker_file.write(f"{dataset_id} {batch_cpu_s:.9f} {batch_wall_s:.9f} {probe:.12f}\n")
        except Exception:
            pass

    def _collect_worker_fetches(self) -> list[tuple[int, float, float, float]]:
        """Every batch time the workers wrote so far: (dataset id, CPU s, wall s, probe s)."""
        out: list[tuple[int, float, float, float]] = list(self.host.worker_fetches)
        folder = self.host.scratch_dir
        if not folder or not os.path.isdir(folder):
            return out
        for name in sorted(os.listdir(folder)):
            if not name.startswith("batches."):
                continue
            try:
                with open(os.path.join(folder, name)) as fh:
                    lines = fh.read().splitlines()
            except OSError:
                continue
            for line in lines:
                parts = line.split()
                if len(parts) == 4:
                    try:
                        out.append((int(parts[0]), float(parts[1]), float(parts[2]), float(parts[3])))
                    except ValueError:
                        continue
        return out

    def fetch_probes(self) -> list[float]:
        """The speed probes run beside every batch made (main process and workers)."""
        return [r[3] for r in self.host.main_fetches] + [r[3] for r in self._collect_worker_fetches()]

    def _close_batch_clock(self) -> None:
        """Keep what the workers wrote, then remove ccprof's own scratch folder."""
        global _ACTIVE
        if _ACTIVE is not None and _ACTIVE() is self:
            _ACTIVE = None
        if self.host.scratch_dir and os.path.isdir(self.host.scratch_dir):
            self.host.worker_fetches = self._collect_worker_fetches()
            for name in os.listdir(self.host.scratch_dir):
                if name.startswith("batches."):
                    try:
                        os.remove(os.path.join(self.host.scratch_dir, name))
                    except OSError:
                        pass
        if self.host.own_scratch:
            shutil.rmtree(self.host.own_scratch, ignore_errors=True)
            self.host.own_scratch = None
            self.host.scratch_dir = None
