"""Projection accuracy: projected against measured step time, from saved profile.json files.

    python bench/projection_accuracy.py runs/*/profile.json [--catalog FILE] [--json]

It NEEDS PROFILES TAKEN ON A GPU for the error figures: a profile measured on a catalog
GPU gives (1) the per-op roofline's error on that same GPU, and, when the same workload
(same script and arguments) was profiled on two different catalog GPUs, (2) the error of
projecting one GPU's measurement onto the other with Habitat scaling, next to (3) the
roofline alone. CPU profiles run too, but only list their roofline projections: a CPU's
step time is not a GPU truth, so they yield no error figure.

Error is ``(projected - measured) / measured``; the summary gives the mean absolute error
and the count of each kind. Habitat reports 11.8% average error across six GPUs (USENIX
ATC 2021); that is the figure to compare (2) with.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccprof.hardware import load_catalog, project, source_gpu  # noqa: E402
from ccprof.hardware.roofline import roofline_step_s  # noqa: E402
from ccprof.profiler.profile import Profile  # noqa: E402


def _paths(args: list[str]) -> list[Path]:
    """profile.json files named, or found under the folders named."""
    out: list[Path] = []
    for a in args:
        p = Path(a)
        out.extend(sorted(p.rglob("profile.json")) if p.is_dir() else [p])
    return out


def _measured(profile: Profile) -> float | None:
    times = [t for t in profile.steps.step_s if t and t > 0]
    return statistics.median(times) if times else None


def _workload(profile: Profile) -> str:
    env = profile.environment
    return f"{Path(env.script).name} {' '.join(env.argv)}".strip() or "?"


def _err(projected: float | None, measured: float | None) -> float | None:
    if not projected or not measured:
        return None
    return (projected - measured) / measured


def evaluate(profiles: dict[str, Profile], catalog: dict) -> dict[str, Any]:
    """Rows of projected vs measured step time, and mean absolute errors per kind.

    Inputs: ``{label: Profile}`` and a catalog. Output: ``{"rows": [...], "summary": {...}}``
    where each row has ``kind`` (``same_gpu_roofline``, ``cross_gpu_habitat``,
    ``cross_gpu_roofline``, ``cpu_roofline_only``), ``source``, ``target``, ``workload``,
    ``projected_s``, ``measured_s`` and ``error_frac``.
    """
    rows: list[dict[str, Any]] = []
    on_gpu: list[tuple[str, Profile, str, float]] = []
    for label, prof in profiles.items():
        src = source_gpu(prof, catalog)
        meas = _measured(prof)
        if src is None or meas is None:
            for gid, p in project(prof, catalog).items():
                rows.append({"kind": "cpu_roofline_only" if prof.device.type != "cuda" else "unmatched_gpu_roofline",
                             "profile": label, "workload": _workload(prof), "source": prof.device.name,
                             "target": gid, "projected_s": p.step_s, "measured_s": None, "error_frac": None})
            continue
        on_gpu.append((label, prof, src, meas))
        proj = project(prof, catalog)[src]
        roof = proj.detail.get("roofline_step_s")
        rows.append({"kind": "same_gpu_roofline", "profile": label, "workload": _workload(prof),
                     "source": src, "target": src, "projected_s": roof, "measured_s": meas,
                     "error_frac": _err(roof, meas)})
    for label_a, a, src_a, _ in on_gpu:
        proj_a = project(a, catalog)
        for label_b, b, src_b, meas_b in on_gpu:
            if src_a == src_b or _workload(a) != _workload(b):
                continue
            habitat = proj_a[src_b].step_s
            roof = roofline_step_s(a.ops, catalog[src_b],
                                   tf32_matmul=a.precision.tf32_matmul, tf32_cudnn=a.precision.tf32_cudnn)
            for kind, value in (("cross_gpu_habitat", habitat), ("cross_gpu_roofline", roof)):
                rows.append({"kind": kind, "profile": f"{label_a} -> {label_b}", "workload": _workload(a),
                             "source": src_a, "target": src_b, "projected_s": value, "measured_s": meas_b,
                             "error_frac": _err(value, meas_b)})
    summary: dict[str, Any] = {}
    for kind in ("same_gpu_roofline", "cross_gpu_habitat", "cross_gpu_roofline"):
        errs = [abs(r["error_frac"]) for r in rows if r["kind"] == kind and r["error_frac"] is not None]
        summary[kind] = {"n": len(errs), "mean_abs_error_frac": statistics.fmean(errs) if errs else None}
    if not any(v["n"] for v in summary.values()):
        summary["note"] = ("no GPU-measured profiles of catalog GPUs were given: there is no error "
                           "figure; profile the same script on one or more GPUs and pass those files")
    return {"rows": rows, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profiles", nargs="+", help="profile.json files or folders holding them")
    ap.add_argument("--catalog", default=None, help="extra catalog TOML (as `ccprof gpus --catalog`)")
    ap.add_argument("--json", action="store_true", help="print rows and summary as JSON")
    ns = ap.parse_args(argv)
    catalog = load_catalog(ns.catalog)
    profiles = {str(p): Profile.from_json(p) for p in _paths(ns.profiles)}
    if not profiles:
        print("no profile.json found", file=sys.stderr)
        return 2
    result = evaluate(profiles, catalog)
    if ns.json:
        print(json.dumps(result, indent=2))
        return 0
    fmt = "{:<24} {:<10} {:<10} {:>12} {:>12} {:>9}  {}"
    print(fmt.format("kind", "source", "target", "projected_ms", "measured_ms", "error", "workload"))
    for r in result["rows"]:
        if r["kind"].endswith("roofline_only") and r["target"] not in ("a100-80gb", "h100-sxm", "l4"):
            continue  # keep CPU rows short: three representative GPUs
        ms = lambda v: "-" if v is None else f"{v * 1e3:.3f}"  # noqa: E731
        err = "-" if r["error_frac"] is None else f"{r['error_frac']:+.1%}"
        print(fmt.format(r["kind"], str(r["source"])[:10], r["target"], ms(r["projected_s"]),
                         ms(r["measured_s"]), err, r["workload"]))
    print()
    for kind, s in result["summary"].items():
        if kind == "note":
            print(f"note: {s}")
        elif s["n"]:
            print(f"{kind}: mean |error| {s['mean_abs_error_frac']:.1%} over {s['n']}")
        else:
            print(f"{kind}: no data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
