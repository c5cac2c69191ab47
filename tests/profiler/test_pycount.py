"""Counting a step's Python in bytecodes: the same code counts the same, every time."""
from __future__ import annotations

import sys

from ccprof.profiler.pycount import OpcodeCounter


def _loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def _count(fn, phase: str = "other") -> dict[str, int]:
    c = OpcodeCounter(lambda: phase)
    c.start()
    try:
        fn()
    finally:
        c.stop()
    return c.counts


def test_the_same_code_counts_the_same_and_more_code_counts_more():
    a, b = _count(lambda: _loop(100)), _count(lambda: _loop(100))
    assert a == b and a["other"] > 100
    assert _count(lambda: _loop(200))["other"] > a["other"]


def test_bytecodes_go_to_the_phase_of_the_moment():
    phase = ["forward"]

    def work():
        _loop(50)
        phase[0] = "other"
        _loop(50)

    c = OpcodeCounter(lambda: phase[0])
    c.start()
    work()
    c.stop()
    assert c.counts["forward"] > 100 and c.counts["other"] > 100


def test_the_frames_already_running_are_counted_too():
    # the loop frame that calls start() is counted from there on: the user's training loop is
    # already running when ccprof starts counting a step
    c = OpcodeCounter(lambda: "other")

    def caller():
        c.start(sys._getframe())
        total = 0
        for i in range(100):
            total += i
        c.stop(sys._getframe())
        return total

    caller()
    assert c.counts.get("other", 0) > 100


def test_a_trace_function_set_before_is_put_back():
    seen = []

    def tracer(frame, event, arg):
        seen.append(event)
        return None

    sys.settrace(tracer)
    try:
        _count(lambda: _loop(10))
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
