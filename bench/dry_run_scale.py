"""How fast and how small is `ccprof analyze --dry-run` on full-size models, and are its counts right?

    python bench/dry_run_scale.py [--only 8b|70b] [--keep DIR]

For Llama-3-8B and Llama-3-70B shapes (bf16 weights, AdamW, batch 1 x 2048 tokens; the loop is
tests/scripts/llama_loop.py, the model built from its config, nothing downloaded) it runs

    python -m ccprof analyze tests/scripts/llama_loop.py --dry-run --steps 3 --warmup 1 \
        --gpu h100-sxm --out DIR -q -- <shape flags>

as a subprocess and prints: wall seconds, peak RSS (ru_maxrss from os.wait4 on the CLI process:
the largest resident set of any process in its tree, the harness child included, after they
end), the exit code, the parameter count of profile.json against the closed form, FLOPs per step
against the analytic counts (tests/helpers/llama_math.py: torch.utils.flop_counter's convention,
which ccprof counts, and Narayanan et al. 2021's 3 x forward), the memory peak against the
analytic peak, and the goals (8B: under 120 s and 4 GiB; 70B: under 300 s).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.llama_math import (  # noqa: E402  (the repository root is on sys.path first)
    LLAMA3_8B,
    LLAMA3_70B,
    activation_bytes_bf16,
    flops_narayanan,
    flops_torch_counter,
    params,
    peak_bytes_bf16_adamw,
)

SCRIPT = ROOT / "tests" / "scripts" / "llama_loop.py"
BATCH, SEQ = 1, 2048
GiB = 1 << 30
# name: (shape, wall-second goal, RSS goal in bytes or None)
CASES = {"8b": (LLAMA3_8B, 120.0, 4 * GiB), "70b": (LLAMA3_70B, 300.0, None)}


def dry_run(shape, out_dir: Path) -> tuple[float, int, int]:
    """(wall_s, peak_rss_bytes, exit_code) of one `ccprof analyze --dry-run`."""
    cmd = [sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--dry-run", "--steps", "3", "--warmup", "1",
           "--gpu", "h100-sxm", "--out", str(out_dir), "-q", "--",
           *shape.args(), "--batch", str(BATCH), "--seq", str(SEQ), "--dtype", "bfloat16"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)           # this tree's rusage, reaped grandchildren included
    wall_s = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall_s, usage.ru_maxrss * 1024, proc.returncode


def pct(got: float, want: float) -> str:
    return f"{100 * (got - want) / want:+.3f}%"


def report(name: str, keep: Path | None) -> bool:
    shape, wall_goal_s, rss_goal = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = (keep / name) if keep else Path(tmp) / "out"
        wall_s, rss, code = dry_run(shape, out_dir)
        prof = json.loads((out_dir / "profile.json").read_text()) if code == 0 else None
    print(f"== Llama-3-{name.upper()} shapes {shape}, bf16, AdamW, batch {BATCH} x {SEQ} tokens")
    print(f"   wall {wall_s:.1f} s   peak RSS {rss / GiB:.2f} GiB   exit {code}")
    if prof is None:
        print("   no profile: the run failed")
        return False
    n_params, want_params = prof["model"]["params"], params(shape)
    print(f"   params   {n_params:,} profile  {want_params:,} formula  ({'exact' if n_params == want_params else pct(n_params, want_params)})")
    flops = prof["flops"]["per_step"]
    torch_conv, megatron = flops_torch_counter(shape, BATCH, SEQ), flops_narayanan(shape, BATCH, SEQ)
    print(f"   FLOPs/step {flops / 1e12:.3f}e12 profile (forward {prof['flops']['forward'] / 1e12:.3f}e12, "
          f"backward {prof['flops']['backward'] / 1e12:.3f}e12)")
    print(f"     vs torch.utils.flop_counter convention {torch_conv / 1e12:.3f}e12 ({pct(flops, torch_conv)}): "
          f"matmuls 3 x forward, full-matrix attention, flash backward 2.5 x its forward")
    print(f"     vs Narayanan et al. 2021 (3 x forward, full-matrix attention) {megatron / 1e12:.3f}e12 ({pct(flops, megatron)})")
    mem = prof["memory"]
    peak, want_peak = mem["peak_bytes"], peak_bytes_bf16_adamw(shape, BATCH, SEQ)
    acts, want_acts = mem["activations_bytes"], activation_bytes_bf16(shape, BATCH, SEQ)
    print(f"   memory peak {peak:,} B = {peak / GiB:.2f} GiB profile  {want_peak:,} B analytic "
          f"({peak - want_peak:+,} B, {pct(peak, want_peak)}): the optimizer step, params + grads + AdamW moments "
          f"+ 2 temporaries of the largest parameter")
    print(f"   ledger: params {mem['params_bytes'] / GiB:.2f}, grads {mem['grads_bytes'] / GiB:.2f}, "
          f"optimizer {mem['optimizer_state_bytes'] / GiB:.2f}, activations {acts / GiB:.2f} GiB "
          f"(analytic estimate {want_acts / GiB:.2f} GiB, {pct(acts, want_acts)})")
    ok = code == 0 and wall_s < wall_goal_s and (rss_goal is None or rss < rss_goal)
    goal = f"under {wall_goal_s:.0f} s" + (f" and {rss_goal / GiB:.0f} GiB" if rss_goal else "")
    print(f"   goal ({goal}): {'met' if ok else 'MISSED'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(CASES), action="append")
    ap.add_argument("--keep", type=Path, help="keep each run's report folder under this one")
    args = ap.parse_args()
    print(f"# bench/dry_run_scale.py  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    results = [report(name, args.keep) for name in (args.only or list(CASES))]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
