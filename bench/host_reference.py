"""The reference host's figures the cost model prices host work at (ccprof/hardware/host.py).

    python bench/host_reference.py                  # 20 rounds, a few minutes
    python bench/host_reference.py --rounds 5 --out bench/results/host-reference-DATE.txt

The cost model states a GPU step's host side on a reference server core: PyTorch's dispatch of
one aten op called from Python, the extra of an ``nn.Module`` call, one Python bytecode, and the
speed probe a DataLoader batch's CPU time is divided by. This bench measures each here, in
thread CPU time, as the best over ``--rounds`` rounds spread over time (on a shared cloud core
the same work ran up to twice as slow from one minute to the next: the fastest round is the
core's own speed, the others are its neighbours').

The bytecode's cost is the median over a corpus of host-side code a training loop runs
(``torch.nn.utils.clip_grad_norm_``, ``optimizer.zero_grad``, an LR scheduler step, a
Trainer-style callback and logging loop, the per-sample batch sampling of nanoGPT-style loops,
plain Python arithmetic): ``(CPU time - aten ops x dispatch) / bytecodes``.

It also shows why the cost model counts instead of timing: the same code's best CPU time moves
from round to round, its counts do not.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from ccprof.profiler.clock import cpu_s  # noqa: E402
from ccprof.profiler.host import OpClock, host_cpu_name, measure_host, speed_probe  # noqa: E402
from ccprof.profiler.pycount import OpcodeCounter  # noqa: E402


def best_cpu_s(fn: Callable[[], object], repeats: int = 200) -> float:
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = cpu_s()
        fn()
        best = min(best, cpu_s() - t0)
    return best


def counts(fn: Callable[[], object]) -> tuple[int, int]:
    """(bytecodes, aten ops) of one call."""
    c = OpcodeCounter(lambda: "x")
    c.start()
    try:
        fn()
    finally:
        c.stop()
    clock = OpClock()
    with clock:
        fn()
    return c.counts.get("x", 0), clock.ops


def corpus() -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(8)])
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1000)
    data = torch.arange(40_000)

    def set_grads():
        for p in params:
            p.grad = torch.ones_like(p)

    set_grads()

    def clip():
        return torch.nn.utils.clip_grad_norm_(params, 1.0)

    def zero_grad():
        opt.zero_grad(set_to_none=False)

    def scheduler():
        sched.step()

    def lr_by_hand():
        for g in opt.param_groups:
            g["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * 0.3))

    def get_batch():
        ix = torch.randint(len(data) - 65, (16,))
        x = torch.stack([data[i:i + 64] for i in ix])
        y = torch.stack([data[i + 1:i + 65] for i in ix])
        return x, y

    @dataclasses.dataclass
    class State:
        step: int = 0
        loss: float = 0.0
        log_history: list = dataclasses.field(default_factory=list)

    class Callback:
        def on_step_end(self, state, control, **kw):
            return state.step % 10 == 0 and control.get("log")

    callbacks = [Callback() for _ in range(6)]

    def trainer_loop():
        state, control = State(step=7, loss=1.234), {"log": True}
        for cb in callbacks:
            cb.on_step_end(state, control, model=model, optimizer=opt)
        logs = {"loss": round(state.loss, 4), "learning_rate": sched.get_last_lr()[0], "epoch": state.step / 100}
        state.log_history.append(logs)
        return json.dumps(logs)

    def arithmetic():
        s = 0.0
        for i in range(300):
            s += (i % 7) * 0.5
        return s

    return {"clip_grad_norm_": clip, "zero_grad": zero_grad, "lr_scheduler.step": scheduler,
            "lr by hand": lr_by_hand, "nanoGPT get_batch": get_batch, "Trainer callbacks and logs": trainer_loop,
            "arithmetic": arithmetic}


def run(rounds: int, pause_s: float) -> dict:
    names = list(corpus())
    times: dict[str, list[float]] = {n: [] for n in names}
    codes: dict[str, set[tuple[int, int]]] = {n: set() for n in names}
    dispatch, module, probe = [], [], []
    for r in range(rounds):
        h = measure_host()
        dispatch.append(h.dispatch_s)
        module.append(h.dispatch_s + h.module_call_s)        # the module call as a whole
        probe.append(min(speed_probe() for _ in range(20)))
        fns = corpus()
        for name in names:
            times[name].append(best_cpu_s(fns[name]))
            codes[name].add(counts(fns[name]))
        print(f"round {r + 1}/{rounds}: dispatch {h.dispatch_s * 1e6:.2f} us (best so far {min(dispatch) * 1e6:.2f})",
              file=sys.stderr)
        if r + 1 < rounds:
            time.sleep(pause_s)
    d = min(dispatch)
    rows = []
    for name in names:
        (n_codes, n_ops), = codes[name] if len(codes[name]) == 1 else (max(codes[name]),)
        best = min(times[name])
        rows.append({"name": name, "cpu_s": best, "spread": max(times[name]) / best - 1, "bytecodes": n_codes,
                     "ops": n_ops, "counts_repeat": len(codes[name]) == 1,
                     "s_per_bytecode": max(0.0, best - n_ops * d) / max(n_codes, 1)})
    return {"cpu": host_cpu_name(), "machine": platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "rounds": rounds, "dispatch_s": d, "module_call_s": max(0.0, min(module) - d),
            "probe_s": min(probe), "opcode_s": statistics.median(r["s_per_bytecode"] for r in rows),
            "dispatch_spread": max(dispatch) / d - 1, "corpus": rows}


def render(res: dict) -> str:
    lines = [f"ccprof reference host figures: {res['cpu']} ({res['machine']}), Python {res['python']}, "
             f"torch {res['torch']}; best of {res['rounds']} rounds, thread CPU time", "",
             f"dispatch of one aten op from Python (torch.add, 4 elements): {res['dispatch_s'] * 1e6:.3f} us "
             f"(slowest round +{res['dispatch_spread']:.0%})",
             f"extra of an nn.Module call around it:                        {res['module_call_s'] * 1e6:.3f} us",
             f"speed probe, one round:                                      {res['probe_s'] * 1e6:.3f} us",
             f"one Python bytecode (median of the corpus):                  {res['opcode_s'] * 1e9:.1f} ns", "",
             "Each corpus item: its best CPU time, how much slower its slowest round was (the same code, the",
             "same machine), and its counts, which repeat exactly in every round:", "",
             "| corpus | best CPU us | slowest round | aten ops | bytecodes | counts repeat | ns per bytecode |",
             "|---|---|---|---|---|---|---|"]
    for r in res["corpus"]:
        lines.append(f"| {r['name']} | {r['cpu_s'] * 1e6:.1f} | +{r['spread']:.0%} | {r['ops']} | {r['bytecodes']} | "
                     f"{'yes' if r['counts_repeat'] else 'no'} | {r['s_per_bytecode'] * 1e9:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--pause", type=float, default=3.0, help="seconds between rounds")
    ap.add_argument("--out")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = run(a.rounds, a.pause)
    text = render(res)
    print(text, end="")
    if a.out:
        Path(a.out).write_text(text)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
