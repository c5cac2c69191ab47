"""How long does `ccprof apply` take on a long script, and what does each step cost?

    python bench/codemod_speed.py [--lines 18000] [--tweaks tf32,mixed_precision]
                                  [--layout classes|functions] [--before REV] [--detail]

Generates a script of about ``--lines`` lines: examples/cnn.py's model, data and training
loop, plus helper code (``classes``: groups of 60 methods, ``functions``: thousands of
top-level functions), and applies the tweaks to it with ``apply_source``. Prints the parse
time and the whole apply's time (one parse, one code-generation pass per module version,
scope analysis only where a tweak needs qualified names).

``--before REV``: also runs the same apply with ccprof's codemods as of git revision REV
(3a50089 is the last commit before the one-parse change) in a subprocess, checks the two give the
same source, and prints the speed-up. Before that change each tweak paid a deep copy of the
module and libcst's parent, position and qualified-name providers, then a second
whole-module codemod for the imports; and the ``functions`` layout (over ~1,000 top-level
statements) made libcst's import adder fail with a RecursionError.

``--detail``: also times libcst's metadata providers once on the parsed script (what each
tweak used to pay) against ``ModuleFacts`` and the scope analysis it runs on demand.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_RUN = r"""
import hashlib, json, sys, time
sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
from ccprof.applier.codemods import apply_source
src = open(sys.argv[1], encoding="utf-8").read()
t = time.perf_counter()
try:
    r = apply_source(src, sys.argv[2].split(","), path=sys.argv[1])
    out = {"seconds": time.perf_counter() - t, "applied": r.applied, "skipped": r.skipped,
           "sha": hashlib.sha256(r.source.encode()).hexdigest()}
except Exception as e:
    out = {"seconds": time.perf_counter() - t, "error": f"{type(e).__name__}: {str(e)[:200]}"}
print(json.dumps(out))
"""


def make_script(lines: int, layout: str) -> str:
    base = (ROOT / "examples" / "cnn.py").read_text(encoding="utf-8")
    head, tail = base.split("\ndef main():", 1)
    parts, n, i, group = [head], head.count("\n") + tail.count("\n"), 0, 0
    while n < lines:
        if layout == "classes":
            block = [f"\n\nclass Helpers{group}:\n    \"\"\"Helper group {group}.\"\"\"\n"]
            for _ in range(60):
                block.append(f"\n    def helper_{i}(self, x, scale={i % 7 + 1}):\n"
                             f"        y = torch.relu(x) * scale\n"
                             f"        return F.dropout(y, p=0.1, training=False) + self.helper_{max(i - 1, 0)}(y)\n")
                i += 1
            group += 1
        else:
            block = [f"\n\ndef helper_{i}(x, scale={i % 7 + 1}):\n    \"\"\"Helper {i}.\"\"\"\n"
                     f"    y = torch.relu(x) * scale\n    return F.dropout(y, p=0.1, training=False)\n"]
            i += 1
        text = "".join(block)
        parts.append(text)
        n += text.count("\n")
    parts.append("\n\ndef main():" + tail)
    return "".join(parts)


def run_revision(rev: str, script: Path, tweaks: str) -> dict:
    """apply_source as of git revision ``rev``, in a subprocess (its ccprof first on the path)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "ccprof"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": tmp}
        proc = subprocess.run([sys.executable, "-c", _RUN, str(script), tweaks], capture_output=True, text=True,
                              env=env, cwd=tmp)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=18000)
    ap.add_argument("--tweaks", default="tf32,mixed_precision")
    ap.add_argument("--layout", choices=("classes", "functions"), default="classes")
    ap.add_argument("--before", metavar="REV", help="also time the codemods of this git revision")
    ap.add_argument("--detail", action="store_true", help="time libcst's metadata providers too")
    args = ap.parse_args()

    import libcst as cst

    from ccprof.applier.codemods import apply_source
    from ccprof.script.facts import ModuleFacts

    code = make_script(args.lines, args.layout)
    tweaks = args.tweaks.split(",")
    print(f"script: {code.count(chr(10))} lines ({args.layout}), tweaks: {', '.join(tweaks)}")
    module, parse_s = timed(lambda: cst.parse_module(code))
    print(f"  libcst parse                         {parse_s:7.2f} s")
    facts, facts_s = timed(lambda: ModuleFacts(module))
    print(f"  ModuleFacts (one codegen pass)       {facts_s:7.2f} s")
    if args.detail:
        from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider, QualifiedNameProvider

        _, scope_s = timed(lambda: facts.qnames(module))
        print(f"  scope analysis (on demand)           {scope_s:7.2f} s")
        _, meta_s = timed(lambda: MetadataWrapper(module).resolve_many(
            [ParentNodeProvider, PositionProvider, QualifiedNameProvider]))
        print(f"  old, per tweak: copy + 3 providers   {meta_s:7.2f} s")
    result, after_s = timed(lambda: apply_source(code, tweaks))
    print(f"  apply_source, all tweaks             {after_s:7.2f} s   applied: {', '.join(result.applied) or '-'}")
    for tweak, why in result.skipped.items():
        print(f"    skipped {tweak}: {why[:100]}")
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "long_script.py"
            script.write_text(code, encoding="utf-8")
            old = run_revision(args.before, script, args.tweaks)
        if "error" in old:
            print(f"  {args.before}: {old['error']}")
        else:
            same = old["sha"] == hashlib.sha256(result.source.encode()).hexdigest()
            print(f"  apply_source at {args.before:<20} {old['seconds']:7.2f} s   applied: "
                  f"{', '.join(old['applied']) or '-'}   same output: {'yes' if same else 'NO'}")
            print(f"  speed-up: {old['seconds'] / after_s:.1f}x")


if __name__ == "__main__":
    main()
