"""How much do ccprof's hooks slow the measured steps, and how long does `ccprof analyze` take?

    python bench/overhead.py [--steps 30] [--rounds 5] [--model gpt|mlp]

Part 1 (in-process, side by side): the same training loop, same model, same data, timed
step by step with the wall clock around each step: plainly, and under a ccprof Session
after discovery (the state the timed steps run in). Rounds alternate plain / hooked so
machine noise hits both; the ratio of medians is the overhead (goal: under 5%).

Part 2 (end to end): wall time of `python examples/gpt_loop.py` for the same number of
optimizer steps ccprof runs (warm-up + FLOP step + memory step + measured), against
`ccprof analyze` on it.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


DEVICE = "cpu"


def make_model(kind: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, x, y = _make_model(kind)
    return model.to(DEVICE), x.to(DEVICE), y.to(DEVICE)


def _make_model(kind: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "gpt":
        from gpt_loop import GPT  # the bundled example's model, at its default size

        model = GPT(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64)
        x = torch.randint(0, 65, (16, 64))                 # (B, T)
        return model, x, torch.roll(x, -1, dims=1)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(256, 256), nn.GELU()) for _ in range(8)], nn.Linear(256, 10))
    return model, torch.randn(64, 256), torch.randint(0, 10, (64,))


def loss_of(kind: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if kind == "gpt":
        return model(x, y)[1]
    return F.cross_entropy(model(x), y)


def timed_steps(kind, model, opt, x, y, n: int) -> list[float]:
    times = []
    for _ in range(n):
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(kind, model, x, y)
        loss.backward()
        opt.step()
        if DEVICE == "cuda":
            torch.cuda.synchronize()      # the GPU's work counts, in both arms alike
        times.append(time.perf_counter() - t0)
    return times


def in_process(kind: str, steps: int, rounds: int) -> dict[str, float]:
    from ccprof.profiler.hooks import Session

    model, x, y = make_model(kind)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    timed_steps(kind, model, opt, x, y, 5)                    # warm caches and allocator
    plain: list[float] = []
    hooked: list[float] = []
    for _ in range(rounds):
        plain += timed_steps(kind, model, opt, x, y, steps)
        session = Session(steps=10 ** 6, warmup=1, passes=False).install()
        try:
            timed_steps(kind, model, opt, x, y, 2)            # discovery step, then per-root hooks only
            hooked += timed_steps(kind, model, opt, x, y, steps)
        finally:
            session.uninstall()
    p, h = statistics.median(plain), statistics.median(hooked)
    return {"plain_median_s": p, "hooked_median_s": h, "overhead_frac": h / p - 1.0}


def end_to_end(steps: int) -> dict[str, float]:
    script = ROOT / "examples" / "gpt_loop.py"
    total = 3 + 2 + steps   # default warm-up + FLOP step + memory step + measured
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(script), "--steps", str(total)], check=True, capture_output=True)
    plain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(script), "--quiet", "--steps", str(steps),
                    "--out", "/tmp/ccprof-bench-report", "--", "--steps", str(total + 50)],
                   check=True, capture_output=True)
    ccprof_s = time.perf_counter() - t0
    return {"plain_script_s": plain_s, "ccprof_analyze_s": ccprof_s, "ratio": ccprof_s / plain_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--device", default="cpu", help="cuda: the hooks' per-phase synchronizations are measured too")
    a = ap.parse_args()
    global DEVICE
    DEVICE = a.device
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for kind in ("mlp", "gpt"):
        r = in_process(kind, a.steps, a.rounds)
        print(f"[hooks] {kind:4s} plain {r['plain_median_s'] * 1e3:8.3f} ms/step  "
              f"hooked {r['hooked_median_s'] * 1e3:8.3f} ms/step  overhead {r['overhead_frac'] * 100:+.2f}%")
    if not a.skip_e2e:
        r = end_to_end(10)
        print(f"[e2e]  plain script {r['plain_script_s']:.2f} s   ccprof analyze {r['ccprof_analyze_s']:.2f} s   "
              f"ratio {r['ratio']:.2f}x (same optimizer steps; analyze also counts FLOPs, memory, advice, report)")


if __name__ == "__main__":
    main()
