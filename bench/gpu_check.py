"""The one prepared device check: run it on a lent NVIDIA machine, keep its output in bench/.

    PYTHONPATH=$PWD python3 bench/gpu_check.py --out "$OUT"      # ~6 min on one H200

It exercises the CUDA paths that CPU CI cannot:
0. The kernel model: bench/kernel_grid.py times a grid of GEMM, convolution, attention and
   memory-bound kernels (bf16, fp32, TF32) and puts each next to ``predict_op_s`` for this GPU
   (``kernel_grid.json``: data for the next refit of ``kernel_params.json``).
1. NVML sampling: `ccprof analyze` on each example on the GPU; the profile's `gpu` section
   must have samples, utilization and energy per step.
2. The CUDA memory cross-check: the ledger's `peak_bytes` against
   `torch.cuda.max_memory_allocated` over the same memory step (`cuda_max_allocated_bytes`).
3. Projection against measurement: the cost model's step for the GPU in use (its catalog id),
   phase by phase, next to the measured median (``detail.model_step_s``; then run
   `python bench/projection_accuracy.py --skip-ops --profiles OUT`).
4. Autocast and friends: `--verify` with mixed_precision, tf32, compile and checkpointing
   forced on the GPT example, measured vs projected step time.

Everything lands in OUT as JSON (profiles, advice) and `gpu_check.txt`; copy them into
bench/results/ in the repo with the date. On the device image some of ccprof's
dependencies are missing (libcst, plotly, fvcore, datasketch): carry them as wheels (see
the device tool's README) or accept that static facts / the HTML report / the fvcore
cross-check are skipped; the measurements above do not need them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [("gpt_loop", ["--n-layer", "6", "--n-embd", "384", "--n-head", "6", "--seq-len", "256",
                          "--batch-size", "32"]),
            ("hf_trainer", []),
            ("cnn", [])]
VERIFY_TWEAKS = ["mixed_precision", "tf32", "compile", "checkpointing"]


def sh(cmd: list[str], log, timeout: float = 600) -> int:
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    log.write(f"$ {' '.join(cmd)}\n  exit {r.returncode} in {time.time() - t0:.1f}s\n")
    if r.returncode != 0:
        log.write(r.stderr[-3000:] + "\n")
    return r.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/ccprof-gpu"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    log = open(out / "gpu_check.txt", "w", buffering=1)
    log.write(f"torch {torch.__version__} cuda {torch.version.cuda} device "
              f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}\n")
    summary: dict = {"examples": {}, "verify": {}}
    r = subprocess.run([sys.executable, "bench/kernel_grid.py", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    summary["kernel_grid"] = r.stdout[-4000:]
    log.write(r.stdout + r.stderr[-2000:] + "\n")
    # hook overhead on the GPU, where the per-phase synchronizations cost something
    r = subprocess.run([sys.executable, "bench/overhead.py", "--device", "cuda", "--skip-e2e"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    summary["overhead"] = r.stdout
    log.write(r.stdout + r.stderr[-2000:] + "\n")
    for name, args in EXAMPLES:
        rep = out / name
        code = sh([sys.executable, "-m", "ccprof", "analyze", f"examples/{name}.py", "--quiet", "--steps", "10",
                   "--out", str(rep), "--", *args], log)
        if not (rep / "profile.json").exists():
            summary["examples"][name] = {"exit": code}
            continue
        p = json.loads((rep / "profile.json").read_text())
        mem, gpu = p["memory"], p.get("gpu") or {}
        dev_id = p["device"].get("catalog_id")
        proj = (p.get("projection") or {}).get(dev_id or "", {})
        row = {
            "exit": code,
            "device": p["device"]["name"],
            "measured_step_s": statistics.median(p["steps"]["step_s"]) if p["steps"]["step_s"] else None,
            "model_step_s": (proj.get("detail") or {}).get("model_step_s"),
            "model_error_frac": (proj.get("detail") or {}).get("model_error_frac"),
            "measured_phase_s": p["steps"].get("phase_s"),
            "model_device_s": (proj.get("detail") or {}).get("device_s"),
            "model_host_s": (proj.get("detail") or {}).get("host_s"),
            "kernel_s_ops": len(p.get("kernel_s") or {}),
            "calibration": (proj.get("detail") or {}).get("calibration"),
            "ledger_peak_bytes": mem["peak_bytes"],
            "cuda_max_allocated_bytes": mem.get("cuda_max_allocated_bytes"),
            "ledger_over_cuda": (mem["peak_bytes"] / mem["cuda_max_allocated_bytes"]
                                 if mem.get("cuda_max_allocated_bytes") else None),
            "nvml_samples": len(gpu.get("samples") or []),
            "mean_sm_util_pct": gpu.get("mean_sm_util_pct"),
            "energy_j_per_step": gpu.get("energy_j_per_step"),
            "gpu_reason": (p.get("reasons") or {}).get("gpu"),
        }
        summary["examples"][name] = row
        log.write(json.dumps({name: row}) + "\n")
    # forced verify of the GPU tweaks on the GPT example (one fresh process per tweak)
    from ccprof.applier.verify import VERIFY_SEED, verify
    from ccprof.artefacts.advice import AdviceSet
    from ccprof.artefacts.profile import Profile
    from ccprof.profiler.runner import run_script

    name, args = EXAMPLES[0]
    script = ROOT / "examples" / f"{name}.py"
    base = run_script(script, args, steps=10, warmup=3, seed=VERIFY_SEED, stdout=subprocess.DEVNULL).profile
    if base is not None:
        from ccprof.api import advise, attach_costs

        base = attach_costs(base)
        projected = advise(base).by_tweak()
        forced = AdviceSet(advice=[replace(projected[t], status="recommended")
                                   for t in VERIFY_TWEAKS if t in projected])

        def run_one(tweaks, options) -> Profile | None:
            return run_script(script, args, steps=10, warmup=3, seed=VERIFY_SEED, tweak=tweaks,
                              tweak_options=options, stdout=subprocess.DEVNULL).profile

        done = verify(run_one, base, forced, k=len(VERIFY_TWEAKS))
        for adv in done.advice:
            m = adv.measured
            summary["verify"][adv.tweak] = {
                "projected_time_saved_frac": adv.projected.time_saved_frac,
                "measured_time_saved_frac": m.time_saved_frac if m else None,
                "projected_peak_after": adv.projected.peak_bytes_after,
                "measured_peak": m.peak_bytes if m else None,
                "note": m.note if m else None,
            }
        (out / "verify_advice.json").write_text(done.to_json())
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    log.write(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
