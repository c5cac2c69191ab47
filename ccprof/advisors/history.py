"""Loss histories for early_stopping: Hugging Face trainer_state.json, CSV, TensorBoard logs.

Every loader returns a list of ``(step, val_loss)`` pairs sorted by step; ``load_history``
picks the loader from the path. ``plateau`` fits the curve and finds where it flattens.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["load_history", "load_trainer_state", "load_csv", "load_tensorboard", "Plateau", "plateau",
           "HistoryError"]

_LOSS_KEYS = ("eval_loss", "val_loss", "validation_loss", "valid_loss", "loss_val", "val/loss", "eval/loss")
_STEP_KEYS = ("step", "global_step", "steps", "iteration", "epoch")


class HistoryError(ValueError):
    """The history cannot be read; the message says what to pass instead."""


def load_trainer_state(path: str | Path) -> list[tuple[float, float]]:
    """``(step, eval_loss)`` from a Hugging Face ``trainer_state.json`` (``log_history``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out = [(float(e.get("step", e.get("epoch", i))), float(e["eval_loss"]))
           for i, e in enumerate(data.get("log_history", [])) if "eval_loss" in e]
    if not out:
        raise HistoryError(f"{path} has no eval_loss in log_history: set eval_strategy='steps' in TrainingArguments")
    return sorted(out)


def load_csv(path: str | Path) -> list[tuple[float, float]]:
    """``(step, val_loss)`` from a CSV with a step/epoch column and a validation-loss column."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise HistoryError(f"{path} is empty")
    cols = {c.strip().lower(): c for c in rows[0]}
    lk = next((cols[k] for k in _LOSS_KEYS if k in cols), None)
    sk = next((cols[k] for k in _STEP_KEYS if k in cols), None)
    if lk is None:
        raise HistoryError(f"{path}: no validation-loss column (one of {', '.join(_LOSS_KEYS)})")
    out = []
    for i, r in enumerate(rows):
        try:
            v = float(r[lk])
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append((float(r[sk]) if sk and r.get(sk) not in (None, "") else float(i), v))
    return sorted(out)


def load_tensorboard(path: str | Path, tag: str | None = None) -> list[tuple[float, float]]:
    """``(step, value)`` of a validation-loss scalar from TensorBoard event files (needs ``tensorboard``)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import (
            EventAccumulator,  # here: tensorboard loads only on this path
        )
    except ImportError as e:
        raise HistoryError("reading TensorBoard logs needs the tensorboard package (pip install 'ccprof[tensorboard]'); "
                           "or export the curve as CSV with step,val_loss columns") from e
    acc = EventAccumulator(str(path))
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    pick = tag or next((t for t in tags if any(k in t.lower() for k in ("val", "eval")) and "loss" in t.lower()), None)
    if pick is None:
        raise HistoryError(f"{path}: no validation-loss scalar among {tags}")
    return sorted((float(e.step), float(e.value)) for e in acc.Scalars(pick))


def load_history(path: str | Path) -> list[tuple[float, float]]:
    """Dispatch on the path: a directory (TensorBoard or one holding trainer_state.json), .json, .csv."""
    p = Path(path)
    if not p.exists():
        raise HistoryError(f"{path} does not exist")
    if p.is_dir():
        ts = p / "trainer_state.json"
        return load_trainer_state(ts) if ts.exists() else load_tensorboard(p)
    if p.suffix == ".json":
        return load_trainer_state(p)
    if p.suffix in (".csv", ".tsv", ".txt"):
        return load_csv(p)
    if p.name.startswith("events.out.tfevents"):
        return load_tensorboard(p.parent)
    raise HistoryError(f"{path}: pass a trainer_state.json, a CSV of step,val_loss, or a TensorBoard log directory")


@dataclass(frozen=True)
class Plateau:
    """Where the validation loss stops improving.

    ``stop_step``: the step an early-stopping rule with ``patience`` evaluations would stop at
    (None if it never would within the history). ``fit``: ``loss ~ a + b * step^-c``.
    """
    best_step: float
    best_loss: float
    stop_step: float | None
    last_step: float
    plateau_step: float | None
    fit: dict[str, float] = field(default_factory=dict)
    evals: int = 0


def _fit_power(points: list[tuple[float, float]]) -> dict[str, float]:
    """Least squares of loss = a + b * step^-c over a grid of c (steps shifted to start at 1)."""
    # Steps as logged (a power law in the run's own step count); shifted to start at 1 only
    # when the log starts at step 0 or below.
    s0 = points[0][0]
    shift = 1 - s0 if s0 < 1 else 0.0
    xs = [s + shift for s, _ in points]
    ys = [v for _, v in points]
    best: dict[str, float] = {}
    for c in [i / 20 for i in range(1, 61)]:
        zs = [x ** -c for x in xs]
        n = len(zs)
        mz, my = sum(zs) / n, sum(ys) / n
        var = sum((z - mz) ** 2 for z in zs)
        if var == 0:
            continue
        b = sum((z - mz) * (y - my) for z, y in zip(zs, ys)) / var
        a = my - b * mz
        sse = sum((a + b * z - y) ** 2 for z, y in zip(zs, ys))
        if not best or sse < best["sse"]:
            best = {"a": a, "b": b, "c": c, "sse": sse, "shift": shift}
    return best


def plateau(points: list[tuple[float, float]], patience: int = 3, min_delta_frac: float = 0.005) -> Plateau:
    """Best loss, the early-stopping step (patience evals without a min_delta improvement), and
    the fitted curve's plateau (where the remaining improvement to its asymptote < min_delta).

    Example: losses 3, 2, 1.5, 1.4, 1.41, 1.42, 1.43 at steps 100..700, patience 3 -> best at
    400, stop at 700.
    """
    if len(points) < 2:
        raise HistoryError("need at least two validation losses to find a plateau")
    best_loss, best_step, since, stop = points[0][1], points[0][0], 0, None
    for step, loss in points[1:]:
        if loss < best_loss - min_delta_frac * abs(best_loss):
            best_loss, best_step, since = loss, step, 0
        else:
            since += 1
            if since >= patience and stop is None:
                stop = step
        if loss < best_loss:
            best_loss, best_step = loss, step
    fit = _fit_power(points) if len(points) >= 3 else {}
    plateau_step = None
    if fit and fit["b"] > 0:
        # remaining improvement b*x^-c < min_delta * a  ->  x > (b / (min_delta * |a|))^(1/c)
        a = abs(fit["a"]) or 1e-12
        x = (fit["b"] / (min_delta_frac * a)) ** (1 / fit["c"])
        plateau_step = x - fit["shift"]
    return Plateau(best_step, best_loss, stop, points[-1][0], plateau_step, fit, len(points))
