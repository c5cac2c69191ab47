"""Time a grid of kernels on the GPU at hand and put them next to the cost model's prediction.

    python bench/kernel_grid.py --out DIR              # on a lent GPU (part of bench/gpu_check.py)
    python bench/kernel_grid.py --device cpu --quick   # the code path only; CPU times mean nothing

Each kernel runs ``--repeat`` times back to back between two CUDA events, after a warm-up, and
its time is the median over rounds divided by the repeats: device time with the launch cost
hidden, what ``ccprof.hardware.predict_op_s`` predicts. The GPU is matched to its catalog id
(``--gpu`` overrides). Output: ``kernel_grid.json`` (rows: op, shapes, dtype, measured_s,
predicted_s, error_frac) and a table by op class on stdout. These measurements are what a
later refit of ``kernel_params.json`` should add to the calibration data (bench/fit_cost_model.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ccprof.hardware import load_catalog, match_device, predict_op_s  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def grid(quick: bool = False) -> list[dict]:
    """The kernels to time: (op, shapes, dtype, a closure factory)."""
    mm = [(256, 256, 256), (1024, 1024, 1024), (4096, 4096, 4096), (8192, 768, 3072), (8192, 3072, 768),
          (8192, 768, 50304), (512, 4096, 4096), (65536, 768, 768)]
    bmm = [(48, 1024, 1024, 64), (144, 1024, 64, 1024), (32, 512, 512, 128)]
    conv = [(256, 64, 56, 56, 64, 3), (256, 256, 14, 14, 256, 3), (256, 256, 56, 56, 64, 1), (64, 3, 224, 224, 64, 7)]
    ew = [(8192, 768), (8192, 3072), (65536, 4096), (1024, 50304)]
    attn = [(8, 12, 1024, 64), (64, 12, 1024, 64), (4, 16, 2048, 128)]
    if quick:
        mm, bmm, conv, ew, attn = mm[:2], bmm[:1], conv[:1], ew[:1], attn[:1]
    rows = []
    for dt in ("bfloat16", "float32", "tfloat32"):
        for m, k, n in mm:
            rows.append({"op": "aten.mm", "shapes": [[m, k], [k, n]], "dtype": dt})
    for dt in ("bfloat16", "float32"):
        for b, m, k, n in bmm:
            rows.append({"op": "aten.bmm", "shapes": [[b, m, k], [b, k, n]], "dtype": dt})
        for b, cin, h, w, cout, ks in conv:
            rows.append({"op": "aten.convolution", "shapes": [[b, cin, h, w], [cout, cin, ks, ks]], "dtype": dt,
                         "padding": ks // 2, "stride": 1})
        for r, c in ew:
            for op in ("aten.add.Tensor", "aten.gelu", "aten._softmax", "aten.native_layer_norm"):
                shapes = [[r, c], [r, c]] if op == "aten.add.Tensor" else [[r, c]]
                rows.append({"op": op, "shapes": shapes, "dtype": dt})
    for b, h, s, d in attn:
        rows.append({"op": "aten._scaled_dot_product_flash_attention", "shapes": [[b, h, s, d]] * 3,
                     "dtype": "bfloat16", "causal": True})
    return rows


def _fn(row: dict, device: str):
    dt = DTYPES["float32" if row["dtype"] == "tfloat32" else row["dtype"]]
    t = [torch.randn(*s, device=device, dtype=dt) for s in row["shapes"]]
    op = row["op"]
    if op == "aten.mm":
        return lambda: torch.mm(t[0], t[1])
    if op == "aten.bmm":
        return lambda: torch.bmm(t[0], t[1])
    if op == "aten.convolution":
        return lambda: F.conv2d(t[0], t[1], padding=row["padding"], stride=row["stride"])
    if op == "aten.add.Tensor":
        return lambda: torch.add(t[0], t[1])
    if op == "aten.gelu":
        return lambda: F.gelu(t[0])
    if op == "aten._softmax":
        return lambda: torch.softmax(t[0], -1)
    if op == "aten.native_layer_norm":
        w = torch.ones(t[0].shape[-1], device=device, dtype=dt)
        return lambda: F.layer_norm(t[0], (t[0].shape[-1],), w, w)
    if op.startswith("aten._scaled_dot_product"):
        return lambda: F.scaled_dot_product_attention(t[0], t[1], t[2], is_causal=row.get("causal", False))
    raise ValueError(op)


def time_kernel(fn, device: str, repeat: int, rounds: int = 5) -> float:
    """Median seconds per call over ``rounds`` of ``repeat`` back-to-back calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(rounds):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(repeat):
                fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) * 1e-3 / repeat)
        else:
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            times.append((time.perf_counter() - t0) / repeat)
    return statistics.median(times)


def run(device: str, gpu: str | None, repeat: int, quick: bool) -> dict:
    cat = load_catalog(user=False)
    if gpu is None and device == "cuda":
        gpu = match_device(torch.cuda.get_device_name(0), cat)
    gpu = gpu or "h100-sxm"
    rows = []
    for row in grid(quick):
        tf32 = row["dtype"] == "tfloat32"
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        try:
            measured = time_kernel(_fn(row, device), device, repeat)
        except Exception as exc:      # an unsupported kernel on this device: recorded, not fatal
            rows.append({**row, "error": f"{type(exc).__name__}: {exc}"})
            continue
        kw = {"stride": row["stride"], "padding": row["padding"]} if "padding" in row else {}
        predicted = predict_op_s(row["op"], row["shapes"], row["dtype"], gpu, catalog=cat, **kw)
        rows.append({**row, "measured_s": measured, "predicted_s": predicted,
                     "error_frac": (predicted - measured) / measured if measured > 0 else None})
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True
    return {"gpu": gpu, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "torch": torch.__version__, "repeat": repeat, "rows": rows}


def table(result: dict) -> str:
    lines = [f"kernel grid on {result['device']} (catalog {result['gpu']}), torch {result['torch']}",
             f"{'op':<44}{'dtype':<10}{'shapes':<34}{'measured':>12}{'predicted':>12}{'error':>9}"]
    by: dict[str, list[float]] = {}
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"{r['op']:<44}{r['dtype']:<10}{str(r['shapes'])[:33]:<34}  failed: {r['error'][:60]}")
            continue
        lines.append(f"{r['op']:<44}{r['dtype']:<10}{str(r['shapes'])[:33]:<34}{r['measured_s'] * 1e6:>10.1f}us"
                     f"{r['predicted_s'] * 1e6:>10.1f}us{r['error_frac']:>+9.1%}")
        by.setdefault(f"{r['op']} {r['dtype']}", []).append(abs(r["error_frac"]))
    lines.append("")
    for k, v in sorted(by.items()):
        lines.append(f"  {k:<54} median |error| {statistics.median(v):.1%} over {len(v)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--gpu", default=None, help="catalog id to predict for (default: match the device)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="a few shapes only")
    ap.add_argument("--out", type=Path, default=None)
    ns = ap.parse_args(argv)
    result = run(ns.device, ns.gpu, ns.repeat, ns.quick)
    text = table(result)
    print(text)
    if ns.out:
        ns.out.mkdir(parents=True, exist_ok=True)
        (ns.out / "kernel_grid.json").write_text(json.dumps(result, indent=1))
        (ns.out / "kernel_grid.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
