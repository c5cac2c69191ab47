"""Runs beside a loaded machine: does any ``ccprof analyze`` of a public script get killed?

    python bench/loaded_runs.py                               # word_language_model, 20 runs
    python bench/loaded_runs.py --script nanogpt --runs 20 --busy 2
    python bench/loaded_runs.py --out bench/results/loaded-runs-DATE.txt

Each run is ``ccprof analyze`` of a vendored public script (bench/stability.py's set-up) with
``--busy`` busy-loop processes beside it for its whole length. It prints each run's exit code,
its wall time, and for a run that ended by a signal the sender ccprof names (its own log of what
it sent, the kernel's out-of-memory killer, or neither). Goal (issue "same script, same
numbers"): no run killed.
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import stability as S  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--script", default="word_language_model", choices=list(S.SCRIPTS))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--busy", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ccprof-loaded-") as tmp:
        work = Path(tmp)
        cwd, script, args = S.prepare(a.script, work)
        for i in range(a.runs):
            out = work / f"out{i}"
            loaders = S._busy(a.busy)
            t0 = time.monotonic()
            try:
                proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", script, "--quiet", "--out", str(out),
                                       "--", *args], cwd=cwd, env=S._env(), capture_output=True, text=True,
                                      timeout=900)
            finally:
                for p in loaders:
                    p.kill()
                    p.wait()
            wall = time.monotonic() - t0
            error = None
            if (out / "profile.json").exists():
                prof = json.loads((out / "profile.json").read_text())
                error = (prof.get("error") or {}).get("message")
            elif proc.returncode:
                error = (proc.stderr.strip().splitlines() or [""])[-1]
            rows.append({"run": i + 1, "exit": proc.returncode, "wall_s": wall, "error": error})
            print(f"run {i + 1}: exit {proc.returncode}, {wall:.1f} s" + (f": {error}" if error else ""),
                  file=sys.stderr)
    codes = collections.Counter(r["exit"] for r in rows)
    killed = [r for r in rows if r["error"] and "signal" in r["error"]]
    lines = [f"ccprof loaded runs: {a.script}, {a.runs} runs of `ccprof analyze`, each beside {a.busy} busy-loop "
             "processes", "",
             f"exit codes: {', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))}",
             f"ended by a signal: {len(killed)}",
             f"wall time per run: min {min(r['wall_s'] for r in rows):.1f} s, "
             f"max {max(r['wall_s'] for r in rows):.1f} s"]
    for r in rows:
        if r["exit"] != 0:
            lines.append(f"run {r['run']}: exit {r['exit']}: {r['error']}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.out:
        Path(a.out).write_text(text)
    return 0 if not killed else 1


if __name__ == "__main__":
    sys.exit(main())
