"""The Python a training step runs on the host, counted in bytecodes by phase (not timed).

The host side of a GPU step is PyTorch's dispatch of each op, each kernel launch and the
Python around them: the model's ``forward`` bodies, the optimizer's Python, the loop's own glue
(batch sampling, ``zero_grad``, clipping, the scheduler, logging). Timing that Python on the
profiling machine is not repeatable: on a machine whose cores are shared (SMT siblings of a
cloud VM, the script's own OpenMP threads spinning, another process) the same code took from
0.6 to 1.7 ms of CPU time per step between runs of one script. A count is repeatable: the
cost model prices each bytecode at the reference host's measured cost
(``ccprof.hardware.host``), as it prices each aten op's dispatch.

:class:`OpcodeCounter` traces one step (``sys.settrace`` with per-opcode events, the frames
already running included), adding each bytecode to the phase the Session is in; frames of
ccprof itself and of torch.compile's compiler are not counted. Any trace function already set
(a debugger, coverage) is put back after the step. :class:`PythonPass` is the Session's pass
that does it over one step after the warm-up (after the FLOP and memory steps).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

__all__ = ["OpcodeCounter", "PythonPass", "SKIPPED_DIRS", "SKIPPED_WITH_CALLEES"]

# code objects whose frames are not counted and neither is anything they call: --dry-run's
# dispatch mode (ccprof.profiler.dryrun.StandInMode) registers its __torch_dispatch__ while a dry
# run is on, so the fake tensors' Python (what stands in for the C++ kernels of a real step) is not
# priced as the step's host work. Empty in a real run: nothing is walked then.
SKIPPED_WITH_CALLEES: set[Any] = set()
# files skipped only while a dry run is on: torch's Python dispatch glue (torch/_ops.py and the
# torch/_library registries it consults), which hands each op of a fake tensor to the dispatch
# modes and which an eager real step runs only for explicit torch.ops calls and custom ops (so a
# real run still counts those)
SKIPPED_WHILE_DRY: list[str] = []
_CALLER_DEPTH = 64

_CCPROF_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _torch_dirs() -> tuple[str, ...]:
    """torch.compile's compiler and tracer: their Python is compile work, not the step's. And
    fake tensors' machinery (--dry-run: FakeTensorMode and the Python meta kernels and
    decompositions it runs for each op), which stands in for C++ kernels a real step dispatches
    without Python; an eager real step does not run it."""
    try:
        import torch  # here: torch is already loaded in the harness; the path is all that is read
    except ImportError:  # pragma: no cover
        return ()
    base = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    # (only what an eager real step never runs: a real run's counts stay what they were)
    dirs = ("_dynamo", "_inductor", "fx", "_functorch", "_export", "_subclasses", "_prims", "_prims_common", "_refs",
            "_decomp")
    files = ("_meta_registrations.py", os.path.join("utils", "_python_dispatch.py"))
    return tuple(base + d + os.sep for d in dirs) + tuple(base + f for f in files)


SKIPPED_DIRS: tuple[str, ...] = (_CCPROF_DIR,) + _torch_dirs()


class OpcodeCounter:
    """Counts the bytecodes this thread runs between :meth:`start` and :meth:`stop`, by the
    phase ``phase_of()`` names at each one.

    >>> phase = ["other"]
    >>> c = OpcodeCounter(lambda: phase[0])
    >>> def work():
    ...     return sum(i for i in range(10))
    >>> c.start(); _ = work(); c.stop()
    >>> c.counts["other"] > 10
    True
    """

    def __init__(self, phase_of: Callable[[], str], skip: tuple[str, ...] = SKIPPED_DIRS) -> None:
        self.phase_of = phase_of
        self.skip = skip
        self.counts: dict[str, int] = {}
        self._prev: Any = None
        self._running = False
        self._seen: set[str] = set()
        self._skip_cache: dict[str, bool] = {}

    def _skipped(self, filename: str) -> bool:
        hit = self._skip_cache.get(filename)
        if hit is None:
            hit = self._skip_cache[filename] = os.path.abspath(filename).startswith(
                self.skip + tuple(SKIPPED_WHILE_DRY)) if not filename.startswith("<") else False
        return hit

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            ph = self.phase_of()
            self.counts[ph] = self.counts.get(ph, 0) + 1
        return self._local

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if self._skipped(frame.f_code.co_filename):
            return None
        if SKIPPED_WITH_CALLEES:
            f, depth = frame, 0
            while f is not None and depth < _CALLER_DEPTH:
                if f.f_code in SKIPPED_WITH_CALLEES:
                    return None
                f, depth = f.f_back, depth + 1
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._local

    def start(self, frame: Any = None) -> None:
        """Count from now on, in new frames and in the frames running (from ``frame`` up)."""
        if self._running:
            return
        self._prev = sys.gettrace()
        self._running = True
        f = frame if frame is not None else sys._getframe(1)
        while f is not None:
            if not self._skipped(f.f_code.co_filename) and f.f_trace is None:
                f.f_trace = self._local
                f.f_trace_opcodes = True
                f.f_trace_lines = False
            f = f.f_back
        sys.settrace(self._global)

    def stop(self, frame: Any = None) -> None:
        """Stop counting; the trace function that was set before :meth:`start` is put back."""
        if not self._running:
            return
        self._running = False
        sys.settrace(self._prev)
        f = frame if frame is not None else sys._getframe(1)
        while f is not None:
            if f.f_trace == self._local:
                f.f_trace = None
                f.f_trace_opcodes = False
            f = f.f_back
        self._prev = None


class PythonPass:
    """The Session's measurement pass over one step: its bytecodes by phase. ``phase_of`` names
    the Session's phase at each bytecode (an evaluation between steps counts as "eval")."""

    def __init__(self, phase_of: Callable[[], str]) -> None:
        self.counter = OpcodeCounter(phase_of)

    def start(self) -> None:
        self.counter.start(sys._getframe(1))

    def set_phase(self, phase: str) -> None:
        """The counter reads the Session's phase itself."""

    def stop(self) -> dict[str, int]:
        self.counter.stop(sys._getframe(1))
        return {ph: n for ph, n in self.counter.counts.items() if n}
