"""The advice ccprof gives on the vendored public scripts (tests/external), top five per script.

    python bench/external_advice.py                        # analyze them all (the e2e fixtures), then print
    python bench/external_advice.py --from /tmp/basetemp   # print what an earlier run left there

The scripts are analyzed by the end-to-end tests' own fixtures (tiny data, small flags: see
tests/e2e/test_external_*.py), run by pytest with ``--basetemp`` so their ``advice.json`` files stay;
then, per script, the first five advice of the one ranking with status, projected share of the run's
GPU cost saved and dollars. Used to compare ccprof versions on scripts nobody here wrote: run it on
each, side by side. Nothing here is a test.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the e2e fixtures' folders (tests/e2e/test_external_*.py), one per vendored script
NAMES = ("adder", "bert", "chargpt", "dynamic_net", "gan_1d", "gat", "llama2c", "nanogpt", "regression", "rnnlm",
         "seq2seq", "textcnn", "wlm")


def analyze_all(basetemp: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "tests/e2e/test_external_scripts.py", "tests/e2e/test_external_more.py",
           "-k", "analyze or runs_plainly", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}"]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def top(advice_path: Path, k: int = 5) -> list[str]:
    data = json.loads(advice_path.read_text())
    rows = []
    for a in data["advice"][:k]:
        p = a.get("projected") or {}
        rows.append(f"{a['tweak']} ({a['status']}, {100 * p.get('cost_saved_frac', 0.0):.1f}% of the run, "
                    f"${p.get('usd_saved', 0.0):.4g})")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", type=Path, default=None, help="a --basetemp folder of an earlier run")
    ap.add_argument("-k", type=int, default=5)
    args = ap.parse_args(argv)
    src = args.src
    if src is None:
        src = Path(tempfile.mkdtemp(prefix="ccprof-external-"))
        analyze_all(src)
    seen: set[Path] = set()
    for path in sorted(src.glob("*/**/advice.json")):
        if path.resolve() in seen or path.relative_to(src).parts[0].endswith("current"):
            continue                                   # pytest's `<name>current` links to the newest folder
        seen.add(path.resolve())
        name = path.relative_to(src).parts[0].rstrip("0123456789")
        if name not in NAMES:
            continue                                   # another test's folder (a --basetemp of the whole suite)
        print(f"{name}: " + "; ".join(top(path, args.k)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
