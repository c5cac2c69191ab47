"""Stability: the same script analyzed three times must give the same GPU seconds and advice.

    python bench/stability.py                                   # all scripts, 3 runs each
    python bench/stability.py --scripts gpt_loop cnn --runs 3
    python bench/stability.py --out bench/results/stability-DATE.txt

Each script is analyzed ``--runs`` times with ``ccprof analyze`` exactly as a user would (a
subprocess, default flags). One of the runs (the last) has ``--busy`` busy-loop processes
running beside it for its whole length, the load a shared CI runner or a laptop with a build
going puts on the profiling host. Per script it prints:

- the spread of the projected step time on every catalog GPU, ``max / min - 1`` over the runs
  (the worst GPU, and the median over GPUs);
- whether the recommended tweaks, in their order, are identical in every run;
- whether the cheapest GPU for the planned run (the right-size table) is the same.

Goals (issue "same script, same numbers"): spread <= 3% on every GPU, identical recommendations
and order, the same cheapest GPU. Nothing here is a test: it measures the machine it runs on.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EXTERNAL = ROOT / "tests" / "external"
TINY_TEXT = EXTERNAL / "word_language_model" / "data" / "tiny" / "train.txt"


def _nanogpt_data(root: Path) -> None:
    """nanoGPT's character-level format (data/shakespeare_char/prepare.py), from a tiny text."""
    import numpy as np  # here: only the nanoGPT set-up needs it

    text = TINY_TEXT.read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(0.9 * len(ids))
    folder = root / "data" / "tiny_char"
    folder.mkdir(parents=True, exist_ok=True)
    ids[:n].tofile(folder / "train.bin")
    ids[n:].tofile(folder / "val.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)


# name -> (folder to copy or None, script inside it, its arguments, set-up)
SCRIPTS: dict[str, tuple[Path | None, str, list[str], Any]] = {
    "gpt_loop": (None, str(EXAMPLES / "gpt_loop.py"), [], None),
    "cnn": (None, str(EXAMPLES / "cnn.py"), [], None),
    "finetune": (None, str(EXAMPLES / "finetune.py"), [], None),
    "hf_trainer": (None, str(EXAMPLES / "hf_trainer.py"), [], None),
    "nanogpt": (EXTERNAL / "nanogpt", "train.py",
                ["--dataset=tiny_char", "--device=cpu", "--compile=False", "--wandb_log=False",
                 "--eval_iters=2", "--eval_interval=1000", "--log_interval=1", "--n_layer=2",
                 "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4",
                 "--gradient_accumulation_steps=2"], _nanogpt_data),
    "word_language_model": (EXTERNAL / "word_language_model", "main.py",
                            ["--data", "./data/tiny", "--emsize", "16", "--nhid", "16", "--nlayers", "2",
                             "--bptt", "8", "--batch_size", "4", "--epochs", "1"], None),
}


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"     # 2019-era scripts torch.load whole models
    return env


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def analyze(cwd: Path, script: str, args: list[str], out: Path, busy: int) -> dict[str, Any]:
    """One ``ccprof analyze``; returns what the table needs (or the error)."""
    loaders = _busy(busy)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", script, "--quiet", "--out", str(out),
                               "--", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    finally:
        for p in loaders:
            p.kill()
            p.wait()
    wall = time.monotonic() - t0
    if proc.returncode != 0 or not (out / "advice.json").exists():
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ''}", "wall_s": wall}
    profile = json.loads((out / "profile.json").read_text())
    advice = json.loads((out / "advice.json").read_text())
    proj = {g: p["step_s"] for g, p in (profile.get("projection") or {}).items() if p.get("step_s")}
    table = (profile.get("cost") or {}).get("detail", {}).get("right_size") or []
    cheapest = table[0]["gpu"] if table else None          # the right-size table is ranked, ties broken
    recommended = [a["tweak"] for a in advice["advice"] if a["status"] == "recommended"]
    return {"projection": proj, "recommended": recommended, "cheapest": cheapest, "wall_s": wall,
            "target_step_s": (profile.get("cost") or {}).get("step_s")}


def prepare(name: str, work: Path) -> tuple[Path, str, list[str]]:
    """A folder of its own for script ``name`` (a copy of its vendored folder, with its data made):
    (cwd, script, its arguments)."""
    folder, script, args, setup = SCRIPTS[name]
    cwd = work / name
    if folder is not None:
        shutil.copytree(folder, cwd, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        cwd.mkdir(parents=True)
    if setup is not None:
        setup(cwd)
    return cwd, script, list(args)


def run_script(name: str, runs: int, busy: int, work: Path) -> dict[str, Any]:
    cwd, script, args = prepare(name, work)
    results = []
    for i in range(runs):
        loaded = busy if i == runs - 1 else 0
        r = analyze(cwd, script, args, work / f"{name}-out{i}", loaded)
        r["busy"] = loaded
        results.append(r)
    return {"name": name, "runs": results}


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    runs = res["runs"]
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        return {"name": res["name"], "error": errors[0]}
    gpus = sorted(set.intersection(*(set(r["projection"]) for r in runs)))
    spreads = {g: max(r["projection"][g] for r in runs) / min(r["projection"][g] for r in runs) - 1 for g in gpus}
    worst = max(spreads, key=spreads.get)
    return {
        "name": res["name"],
        "worst_gpu": worst, "worst_spread": spreads[worst],
        "median_spread": statistics.median(spreads.values()),
        "same_recommended": all(set(r["recommended"]) == set(runs[0]["recommended"]) for r in runs),
        "same_order": all(r["recommended"] == runs[0]["recommended"] for r in runs),
        "same_cheapest": len({r["cheapest"] for r in runs}) == 1,
        "cheapest": [r["cheapest"] for r in runs],
        "recommended": [r["recommended"] for r in runs],
        "target_ms": [round((r["target_step_s"] or 0) * 1e3, 3) for r in runs],
        "wall_s": [round(r["wall_s"], 1) for r in runs],
    }


def render(rows: list[dict[str, Any]], runs: int, busy: int) -> str:
    lines = [f"ccprof stability: each script analyzed {runs} times, the last with {busy} busy-loop processes beside it",
             f"(host: {os.cpu_count()} CPUs; goals: spread <= 3% on every GPU, same recommendations and order, "
             "same cheapest GPU)", "",
             "| script | worst GPU spread | median GPU spread | same recommended | same order | same cheapest GPU |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['name']} | {r['worst_spread']:.1%} ({r['worst_gpu']}) | {r['median_spread']:.1%} | "
                     f"{'yes' if r['same_recommended'] else 'no'} | {'yes' if r['same_order'] else 'no'} | "
                     f"{'yes' if r['same_cheapest'] else 'no'} |")
    lines.append("")
    for r in rows:
        if "error" in r:
            continue
        lines.append(f"{r['name']}: target step (ms) per run {r['target_ms']}; cheapest {r['cheapest']}; "
                     f"analyze wall s {r['wall_s']}")
        for i, rec in enumerate(r["recommended"]):
            lines.append(f"    run {i + 1}: {', '.join(rec) or '(none recommended)'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scripts", nargs="*", default=list(SCRIPTS), choices=list(SCRIPTS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes beside the last run")
    ap.add_argument("--out", help="also write the table here")
    ap.add_argument("--json", help="write the raw per-run figures here")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ccprof-stability-") as tmp:
        raw = [run_script(n, a.runs, a.busy, Path(tmp)) for n in a.scripts]
    rows = [summarize(r) for r in raw]
    text = render(rows, a.runs, a.busy)
    print(text, end="")
    if a.out:
        Path(a.out).write_text(text)
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
