"""`ccprof apply` of the report's top three rewrites on every vendored public script, checked in effect.

    python bench/apply_external.py                          # all thirteen scripts, one after another
    python bench/apply_external.py --only chargpt --only nanogpt
    python bench/apply_external.py --jobs 2 --timeout 900 --json /tmp/apply-external.json

Issue 21's definition of done for the public scripts in tests/external: the report's top three tweaks
that have a rewrite are applied, the rewritten script runs under `ccprof analyze` (exit 0), and the
re-analysis reports each tweak in effect. Per script, in a fresh copy of its folder made by the
end-to-end tests' own preparation (tests/e2e/test_external_*.py: data, stand-in modules, the
fixture's arguments), as a user would:

1. ``ccprof analyze SCRIPT --steps 3 --warmup 1 --out before -- ARGS``;
2. ``ccprof apply SCRIPT --from before/advice.json --top 3 -o SCRIPT_ccprof.py --json``: each tweak's
   outcome (written, turn_on, already_present, refused; ``skipped`` ones were passed over by the
   ranking: no rewrite, or a conflict) with its reason, and the ``command`` the run needs;
3. ``ccprof analyze`` of the rewrite (the original script when nothing was written) with that command
   line (the run's arguments when apply gives none); skipped when no tweak was written or turned on;
4. per tweak applied: its status in the re-analysis (``already_applied`` = in effect), and the
   projected step time on the profile's target GPU before and after.

The thirteen scripts are the fixtures' analyses (not the llama2.c resume variant, the same script
again). Every command has a timeout (``--timeout``; the process group is killed past it), and a failure of one
script is written in its row without stopping the others. Prints the table and writes it to
bench/results/apply-external-<date>.txt (``--out`` to choose). Nothing here is a test.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))          # `tests` is imported below: the fixtures' own preparation

from tests.e2e import test_external_more as more  # noqa: E402
from tests.e2e import test_external_scripts as first  # noqa: E402

TOP = 3
IN_EFFECT = "already_applied"
APPLIED = ("written", "turn_on", "already_present")       # outcomes whose tweak should be in effect after


@dataclass
class Case:
    """One script ready to run: its folder (a fresh copy), the script in it, the fixture's arguments
    and the folders its imports need on PYTHONPATH (minGPT's package, stand-in modules)."""
    cwd: Path
    script: str
    args: list[str]
    paths: tuple[Path, ...] = ()


# name -> (script, the fixture's arguments); the folder and its data come from the fixtures' helpers
# (`first._copy` + `_nanogpt_data`, `more._fresh`). The arguments are the fixtures' (tests/e2e/
# test_external_scripts.py: nanogpt, word_lm, regression; test_external_more.py: the rest).
def _more_args() -> dict[str, tuple[str, list[str]]]:
    vocab = len(more._char_ids(more.TINY_TEXT.read_text(encoding="utf-8"))[1])     # what _llama_data makes
    return {
        "llama2c": ("train.py", [*more.LLAMA_ARGS, f"--vocab_size={vocab}", "--max_iters=1000",
                                 "--eval_interval=1000"]),
        "chargpt": ("chargpt.py", [*more.CHARGPT_ARGS, "--trainer.max_iters=1000"]),
        "adder": ("adder.py", [*more.ADDER_ARGS, "--trainer.max_iters=2000"]),
        "gan": ("gan_pytorch.py", []),
        "bert": ("BERT.py", []),
        "seq2seq": ("Seq2Seq.py", []),
        "textcnn": ("TextCNN.py", []),
        "rnnlm": ("main.py", []),
        "dynamic_net": ("dynamic_net.py", []),
        "gat": ("main.py", [*more.GAT_ARGS, "--epochs", "300"]),
    }


NAMES = ("nanogpt", "wlm", "regression", "llama2c", "chargpt", "adder", "gan", "bert", "seq2seq", "textcnn",
         "rnnlm", "dynamic_net", "gat")


def prepare(name: str, tmp: Path) -> Case:
    """A fresh copy of script ``name``'s folder under ``tmp`` with the data its fixture makes."""
    tmp.mkdir(parents=True, exist_ok=True)
    if name == "nanogpt":
        root = first._copy("nanogpt", tmp)
        first._nanogpt_data(root)
        return Case(root, "train.py", [*first.NANOGPT_ARGS, "--max_iters=1000"])
    if name == "wlm":
        root = first._copy("word_language_model", tmp)
        return Case(root, "main.py", [*first.WLM_ARGS, "--epochs", "3", "--save", str(tmp / "model.pt")])
    if name == "regression":
        return Case(first._copy("regression", tmp), "main.py", [])
    script, args = _more_args()[name]
    cwd, paths = more._fresh(name, tmp)
    return Case(cwd, script, args, tuple(paths))


def _run(case: Case, argv: list[str], timeout_s: float) -> tuple[int | str, str, str]:
    """One ccprof command in the case's folder: (exit code or "timeout", stdout, stderr). Runs in a
    session of its own, so past the timeout the harness child the CLI started is killed with it."""
    proc = subprocess.Popen([sys.executable, "-m", "ccprof", *argv], cwd=case.cwd, env=more._env(*case.paths),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return "timeout", out, err
    return proc.returncode, out, err


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def analyze(case: Case, script: str, args: list[str], out: Path, timeout_s: float) -> dict[str, Any]:
    """``ccprof analyze`` with the fixtures' measurement (3 steps after 1 warm-up); what the table needs."""
    t0 = time.monotonic()
    code, _, err = _run(case, ["analyze", script, "--quiet", "--steps", "3", "--warmup", "1", "--timeout",
                               str(timeout_s), "--out", str(out), "--", *args], timeout_s + 60)
    res: dict[str, Any] = {"exit": code, "script": script, "args": args, "wall_s": round(time.monotonic() - t0, 1)}
    if code != 0:
        res["error"] = _last_line(err)
    if (out / "profile.json").is_file():
        profile = json.loads((out / "profile.json").read_text())
        cost = profile.get("cost") or {}
        res.update(status=profile.get("status"), gpu=cost.get("gpu"), step_s=cost.get("step_s"),
                   usd_run=cost.get("usd_run"), run_steps=cost.get("run_steps"))
    if (out / "advice.json").is_file():
        advice = json.loads((out / "advice.json").read_text())["advice"]
        res["advice"] = {a["tweak"]: {"status": a["status"], "rationale": a.get("rationale", "")} for a in advice}
    return res


def apply(case: Case, advice: Path, output: str, timeout_s: float) -> dict[str, Any]:
    """``ccprof apply --from advice.json --top 3 --json``: its JSON (each tweak's outcome, the command)."""
    code, out, err = _run(case, ["apply", case.script, "--from", str(advice), "--top", str(TOP), "-o", output,
                                 "--json"], timeout_s)
    try:
        done = json.loads(out)
    except json.JSONDecodeError:
        return {"exit": code, "error": _last_line(err) or "no JSON on stdout", "tweaks": [], "written": False,
                "command": None}
    done["exit"] = code
    done.pop("diff", None)
    return done


def run_one(name: str, work: Path, timeout_s: float) -> dict[str, Any]:
    """The four stages for script ``name``; a failure is recorded in the result, never raised."""
    res: dict[str, Any] = {"name": name}
    try:
        case = prepare(name, work / name)
        res["script"] = case.script
        res["before"] = before = analyze(case, case.script, case.args, work / name / "before", timeout_s)
        if before["exit"] != 0 or "advice" not in before:
            return res
        output = f"{Path(case.script).stem}_ccprof.py"
        res["apply"] = done = apply(case, work / name / "before" / "advice.json", output, timeout_s)
        if not any(o["outcome"] in ("written", "turn_on") for o in done["tweaks"]):
            return res                                   # nothing changed: a re-analysis would repeat step 1
        script, args = (output, case.args) if done["written"] else (case.script, case.args)
        if done.get("command"):                          # ["python", SCRIPT, *ARGS]: the run's command line
            script, args = done["command"][1], done["command"][2:]
        res["after"] = analyze(case, script, args, work / name / "after", timeout_s)
    except Exception as exc:                             # a bench bug or a vanished file: keep the others going
        res["error"] = f"{type(exc).__name__}: {exc}"
        res["traceback"] = traceback.format_exc()
    return res


# ---------------------------------------------------------------------------------- the table

def _picked(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The tweaks apply took from the ranking (not the ones passed over), in rank order."""
    return [o for o in (res.get("apply") or {}).get("tweaks", []) if o["outcome"] != "skipped"]


def _ms(step_s: float | None) -> str:
    return f"{1e3 * step_s:.3g} ms" if step_s else "?"


def _in_effect(res: dict[str, Any], o: dict[str, Any]) -> str:
    if o["outcome"] not in APPLIED:
        return "-"
    after = res.get("after")
    if after is None:                                    # already_present only: nothing was re-run
        return "(not re-run)"
    status = (after.get("advice") or {}).get(o["tweak"], {}).get("status")
    return "yes" if status == IN_EFFECT else f"no ({status or 'no advice'})"


def row(res: dict[str, Any]) -> list[str]:
    """script | top-3 with rewrites | outcome each | rewrite runs (exit) | in effect each | step before -> after."""
    before, done, after = res.get("before") or {}, res.get("apply"), res.get("after")
    if "error" in res:
        return [res["name"], f"bench error: {res['error']}", "", "", "", ""]
    if before.get("exit") != 0:
        return [res["name"], f"analyze exit {before.get('exit')}: {before.get('error', '')}", "", "", "", ""]
    if done is None:
        return [res["name"], "(no advice.json)", "", "", "", _ms(before.get("step_s"))]
    picked = _picked(res)
    if not picked:
        return [res["name"], f"none (apply exit {done['exit']}: {done.get('error') or 'no recommended rewrite'})",
                "", "", "", _ms(before.get("step_s"))]
    runs = "not re-run (nothing written or turned on)" if after is None else (
        f"{after['exit']}" + ("" if after["exit"] == 0 else f": {after.get('error', '')}"))
    step = f"{_ms(before.get('step_s'))} -> {_ms((after or {}).get('step_s'))}" if after else _ms(before.get("step_s"))
    return [res["name"], ", ".join(o["tweak"] for o in picked), ", ".join(o["outcome"] for o in picked), runs,
            ", ".join(_in_effect(res, o) for o in picked), f"{step} ({before.get('gpu')})"]


def details(res: dict[str, Any]) -> list[str]:
    """Below the table: each picked tweak's reason or note, the command line, and for a tweak not in
    effect the re-analysis's rationale."""
    lines = [f"{res['name']} ({res.get('script', '?')}):"]
    if "traceback" in res:
        lines += ["    " + line for line in res["traceback"].rstrip().splitlines()[-6:]]
    before, done, after = res.get("before") or {}, res.get("apply") or {}, res.get("after") or {}
    if before:
        lines.append(f"    before: exit {before['exit']}, {before['wall_s']} s" + (
            f", run {before.get('run_steps')} steps, ${before.get('usd_run') or 0:.4g} on {before.get('gpu')}"
            if before.get("gpu") else f"; {before.get('error', '')}"))
    for o in done.get("tweaks", []):
        why = "; ".join(x for x in (o.get("reason"), o.get("note")) if x)
        lines.append(f"    #{o.get('place')} {o['tweak']}: {o['outcome']}" + (f": {why[:400]}" if why else ""))
        status = (after.get("advice") or {}).get(o["tweak"])
        if after and o["outcome"] in APPLIED and status and status["status"] != IN_EFFECT:
            lines.append(f"        after: {status['status']}: {status['rationale'][:400]}")
    if done.get("command"):
        lines.append(f"    command: {' '.join(done['command'])}")
    if after:
        lines.append(f"    after: {after['script']} exit {after['exit']}, {after['wall_s']} s, run "
                     f"{after.get('run_steps')} steps, ${after.get('usd_run') or 0:.4g}"
                     + (f"; {after['error']}" if after.get("error") else ""))
    return lines


def summary(results: list[dict[str, Any]]) -> str:
    """One line: how many picked tweaks were applied and are in effect, how many rewrites ran."""
    picked = [(r, o) for r in results for o in _picked(r)]
    applied = [(r, o) for r, o in picked if o["outcome"] in APPLIED]
    in_effect = [(r, o) for r, o in applied if _in_effect(r, o) == "yes"]
    reruns = [r["after"] for r in results if r.get("after")]
    return (f"{len(results)} scripts; {len(picked)} tweaks picked, {len(applied)} applied (written, turned on or "
            f"already there), {len(in_effect)} in effect; {sum(a['exit'] == 0 for a in reruns)} of {len(reruns)} "
            "re-analyses exit 0")


def render(results: list[dict[str, Any]], commit: str, when: str) -> str:
    head = ["script", f"top {TOP} with rewrites", "outcome each", "rewrite runs (exit)", "in effect each",
            "projected step before -> after"]
    lines = [f"ccprof apply --from advice.json --top {TOP} on the vendored public scripts (ccprof {commit}, "
             f"{when}, host {os.cpu_count()} CPUs)",
             "in effect = the re-analysis of the rewrite, run with apply's command line, reports the tweak "
             "already_applied; '-' = not applied (refused)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    lines += ["", summary(results), ""]
    for r in results:
        lines += details(r)
    return "\n".join(lines) + "\n"


def _commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=NAMES, help="run this script only (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="scripts at once (default 1: each analyze is CPU-bound)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds for each ccprof command")
    ap.add_argument("--out", type=Path, default=None,
                    help="the table's file (default bench/results/apply-external-<date>[-<only>].txt)")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw per-script results here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    ap.add_argument("--from", dest="src", type=Path, default=None,
                    help="render the raw results an earlier --json wrote instead of running (prints only)")
    a = ap.parse_args(argv)
    if a.src is not None:
        raw = json.loads(a.src.read_text())
        print(render(raw["results"], raw["commit"], raw["when"]), end="")
        return 0
    names = [n for n in NAMES if n in (a.only or NAMES)]
    commit, when = _commit(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="ccprof-apply-external-"))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            results = list(pool.map(lambda n: run_one(n, work, a.timeout), names))
    finally:
        if a.keep:
            print(f"work folder: {work}", file=sys.stderr)
        else:
            import shutil  # here: only the clean-up needs it

            shutil.rmtree(work, ignore_errors=True)
    text = render(results, commit, when)
    print(text, end="")
    out = a.out or ROOT / "bench" / "results" / (
        f"apply-external-{time.strftime('%Y-%m-%d', time.gmtime())}" + (f"-{'-'.join(names)}" if a.only else "")
        + ".txt")
    out.write_text(text)
    if a.json:
        a.json.write_text(json.dumps({"commit": commit, "when": when, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
