"""Exports of a profile: the Chrome trace of its projected GPU step, and the Parquet engine at hand.

    from ccprof.reports.export import step_trace
    trace = step_trace(Profile.from_json("profile.json"))      # a dict: json.dump it, open it in
                                                                # ui.perfetto.dev or chrome://tracing

The tables (ops.csv, modules.csv, Parquet) are ``Profile.ops_frame()`` / ``modules_frame()``
written by ``ccprof.api.export_profile``; this module returns data and writes nothing.

The trace is the Trace Event Format's JSON object form ("traceEvents", complete events
``ph: "X"`` with ``ts``/``dur`` in microseconds on ``pid``/``tid`` tracks; Google, "Trace Event
Format", https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU). It is the
cost model's step on the target GPU, not a measurement, starting at ``START_US``: one process,
three tracks:

* ``phases``: data, forward, backward, optimizer, other, one after the other, each as long as the
  projection's phase (``GpuProjection.phase_s``, which is the larger of the phase's device and host
  time; on the GPU the profile was measured on, the measured phase, stretched where needed to hold
  the modelled kernels and host work);
* ``GPU kernels``: each op row's kernels (all its calls, one event) in the order the step first ran
  them, packed from the start of its phase; durations are ``GpuProjection.op_s`` (to 15 ps)
  and sum to the step's modelled device time; rows that launch nothing (views, host
  syncs) have no event;
* ``host``: the host work the projection prices in each phase (dispatch, launches, Python;
  ``detail["host_s"]``) and the data wait (the data phase).
"""
from __future__ import annotations

import importlib.util
import json
from typing import Any

from ccprof.artefacts.frames import projection_for
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.vocab import STEP_PHASES

__all__ = ["TRACE_SCHEMA", "PARQUET_ENGINES", "parquet_engine", "step_trace", "trace_device_us"]

# kept in the trace's top-level object (trace viewers ignore keys they do not know) so that
# ccprof's output policy knows the file is its own (ccprof.outputs.written_by_ccprof)
TRACE_SCHEMA = "ccprof.trace/1"
# pandas.DataFrame.to_parquet's engines, in the order pandas tries them
PARQUET_ENGINES = ("pyarrow", "fastparquet")
PID = 1
TRACKS = {"phases": 1, "GPU kernels": 2, "host": 3}
US = 1e6
# Times are written in whole 1/65536ths of a microsecond (15 ps): binary fractions add exactly in
# floating point (up to 2**37 us, 38 hours), so an event that ends where the next begins does not
# overlap it by a rounding error (DevTools' viewer drops such events from the track)
TICKS_PER_US = 2 ** 16
# The step starts 1 us into the trace: DevTools' viewer leaves events at ts 0 out of the trace's
# bounds (a step drawn from 0 showed a range short by its first kernel)
START_US = 1.0


def parquet_engine() -> str | None:
    """The first Parquet engine importable here (pyarrow, fastparquet), or None."""
    return next((e for e in PARQUET_ENGINES if importlib.util.find_spec(e) is not None), None)


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": PID, "tid": tid, "args": args}


def _us(t_s: float) -> float:
    """Seconds as microseconds, in whole ticks (:data:`TICKS_PER_US`)."""
    return round(t_s * US * TICKS_PER_US) / TICKS_PER_US


def _event(name: str, cat: str, start_s: float, end_s: float, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    """A complete event from ``start_s`` to ``end_s`` (seconds from the step's start)."""
    ts = START_US + _us(start_s)
    return {"name": name, "cat": cat, "ph": "X", "ts": ts, "dur": START_US + _us(end_s) - ts, "pid": PID,
            "tid": tid, "args": args}


def step_trace(profile: Profile, gpu: str | None = None) -> dict[str, Any]:
    """The projected GPU step of ``profile`` on ``gpu`` (default the target GPU) as a Chrome
    trace-event JSON object (see the module docstring for the tracks).

    Inputs: a profile holding the per-op seconds for that GPU (``ccprof.hardware.attach``;
    ValueError saying so otherwise). Output: ``{"traceEvents": [...], "displayTimeUnit": "ms",
    "otherData": {...}, "schema": TRACE_SCHEMA}``, ready for ``json.dump``.

    Example: ``sum(e["dur"] for e in step_trace(p)["traceEvents"] if e.get("tid") == 2)`` is the
    step's modelled kernel time in microseconds.
    """
    gid, proj = projection_for(profile, gpu)
    device = {ph: float(v) for ph, v in (proj.detail.get("device_s") or {}).items()}
    host = {ph: float(v) for ph, v in (proj.detail.get("host_s") or {}).items()}
    bound = proj.detail.get("bound") or {}
    name = (profile.cost.detail or {}).get("gpu_name") if profile.cost is not None and profile.cost.gpu == gid else None
    events: list[dict[str, Any]] = [
        _meta("process_name", 0, {"name": f"ccprof: projected step on {name or gid} ({proj.method})"}),
        *(_meta("thread_name", tid, {"name": track}) for track, tid in TRACKS.items()),
        *(_meta("thread_sort_index", tid, {"sort_index": tid}) for tid in TRACKS.values()),
    ]
    rows: dict[str, list[tuple[Any, float]]] = {}
    for op, sec in zip(profile.ops, proj.op_s):
        rows.setdefault(op.phase if op.phase in STEP_PHASES else "other", []).append((op, float(sec)))
    t = 0.0
    for ph in STEP_PHASES:
        kernels = [(op, s) for op, s in rows.get(ph, []) if s > 0]
        dev_s = sum(s for _, s in kernels)
        win = max(float(proj.phase_s.get(ph, 0.0) or 0.0), dev_s, host.get(ph, 0.0))
        if win <= 0:
            continue
        events.append(_event(ph, "phase", t, t + win, TRACKS["phases"], {
            "phase_s": proj.phase_s.get(ph, 0.0), "device_s": device.get(ph, 0.0), "host_s": host.get(ph, 0.0),
            "bound": bound.get(ph, "")}))
        k_t = t
        for op, s in kernels:
            events.append(_event(op.op, ph, k_t, k_t + s, TRACKS["GPU kernels"], {
                "calls": op.count, "per_call_us": s * US / max(op.count, 1), "dtype": op.dtype,
                "flops": op.flops, "bytes": op.bytes, "shapes": json.dumps(op.shapes), "scope": op.scope,
                "modules": json.dumps(op.modules)}))
            k_t += s
        if ph == "data":
            events.append(_event("data wait", ph, t, t + win, TRACKS["host"],
                                 {"method": str((proj.detail.get("data") or {}).get("method", ""))}))
        elif host.get(ph, 0.0) > 0:
            events.append(_event(f"host: {ph}", ph, t, t + host[ph], TRACKS["host"],
                                 {"what": "dispatch, CUDA launches and the phase's Python, as priced"}))
        t += win
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "ccprof", "gpu": gid, "method": proj.method, "step_s": proj.step_s,
            "kernel_s": sum(float(s) for s in proj.op_s),
            "note": ("projected by ccprof's cost model, not measured: each op row's calls are one event; "
                     "GPU kernels sum to the step's modelled device time; host dispatch and the data wait "
                     "are on the host track"),
        },
        "schema": TRACE_SCHEMA,
    }


def trace_device_us(trace: dict[str, Any]) -> float:
    """Microseconds of the kernel events of a :func:`step_trace` (its ``GPU kernels`` track)."""
    return sum(e["dur"] for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("tid") == TRACKS["GPU kernels"])
