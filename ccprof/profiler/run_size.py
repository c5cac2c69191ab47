"""How long the run is meant to be, read from the live script at its first optimizer step.

The dollars of a run are its step time times its steps, so the steps must be the script's
own: a user who passes ``--max_iters 200`` means 200, whatever an infinite sampler's length
says. At the first optimizer step (the stack alive), :func:`probe` walks the Python frames
from the training loop outwards and collects, with where each came from:

1. a framework trainer in a frame's ``self``: Hugging Face ``Trainer.state.max_steps`` (what
   the Trainer computed from max_steps, epochs, the loader and accumulation), a Lightning
   ``Trainer``'s ``estimated_stepping_batches`` / ``max_steps``;
2. the loops around the optimizer step in the user's own code, across frames (their AST, their
   values from the frames), multiplied: ``for ... in range(N)``, ``while it < N``, a list's
   length -- iterations; a loop over a DataLoader -- epochs (the loops outside it count them);
   ``if it >= N: break`` -- a cap, from the counter's value now (a resumed run has less left);
   an optimizer step under ``if i % k == 0`` runs every k iterations;
3. attributes with a limit's name (``max_iters``, ``max_steps``, ``epochs``, ...) on the
   frames' ``args``/``config``/``self`` objects and the script's globals.

Each limit is a :class:`~ccprof.artefacts.profile.RunLimit`; ``ccprof.hardware.cost.run_steps``
picks the most direct one. Nothing here changes the script or raises into it.
"""
from __future__ import annotations

import os
import sys
import types
from typing import Any

from ccprof.artefacts.profile import RunLimit

# the parts, re-exported here: run_size is the module the Session and the tests import
from ccprof.profiler._run_size_eval import (  # noqa: F401  (re-exported)
    _abspath,
    _frames,
    _int,
    _tree,
    _Unsafe,
    _user_frame,
    safe_eval,
)
from ccprof.profiler._run_size_loops import (  # noqa: F401  (re-exported)
    EPOCH_NAMES,
    STEP_NAMES,
    _enclosing_ifs,
    _period_of,
    data_loop,
    epoch_loop_steps,
    loop_limits,
)

__all__ = ["STEP_NAMES", "EPOCH_NAMES", "probe", "epoch_steps", "loop_limits", "named_limits", "safe_eval", "data_loop",
           "eval_period", "call_site"]

_CONTAINERS = ("args", "config", "cfg", "opt", "opts", "hparams", "params", "conf", "hp", "FLAGS", "flags",
               "training_args", "train_config", "trainer_config")


def _attr_limits(obj: Any, label: str) -> list[RunLimit]:
    out = []
    for name in STEP_NAMES + EPOCH_NAMES:
        try:
            v = getattr(obj, name) if not isinstance(obj, dict) else obj.get(name)
        except Exception:
            continue
        n = _int(v)
        if n is not None and n > 0:
            kind = "epochs" if name in EPOCH_NAMES else "steps"
            out.append(RunLimit(kind, float(n), f"{label}.{name}={n}", 3 if name not in ("steps", "epoch_count") else 4))
    return out


def named_limits(frame: types.FrameType) -> list[RunLimit]:
    """Limit-named values in the frame: globals, and attributes of ``args``/``config``/``self``
    (one level deeper too: ``self.config.max_iters``, ``config.trainer.max_iters``)."""
    out: list[RunLimit] = []
    scopes = {"global": frame.f_globals, "local": frame.f_locals}
    for scope, d in scopes.items():
        for name in STEP_NAMES + EPOCH_NAMES:
            if name in d:
                n = _int(d[name])
                if n is not None and n > 0:
                    out.append(RunLimit("epochs" if name in EPOCH_NAMES else "steps", float(n),
                                        f"{name}={n} ({scope} in {os.path.basename(frame.f_code.co_filename)})",
                                        3 if name not in ("steps",) else 4))
        for cname in _CONTAINERS + ("self",):
            obj = d.get(cname)
            if obj is None or isinstance(obj, (int, float, str, bytes)):
                continue
            out += _attr_limits(obj, cname)
            for sub in ("config", "args", "cfg", "trainer", "train", "training"):
                inner = getattr(obj, sub, None) if not isinstance(obj, dict) else obj.get(sub)
                if inner is not None and not isinstance(inner, (int, float, str, bytes)):
                    out += _attr_limits(inner, f"{cname}.{sub}")
    return out


def _framework_limits(obj: Any) -> list[RunLimit]:
    """Hugging Face and Lightning trainers, by what they computed for the run."""
    cls = type(obj)
    mod = cls.__module__ or ""
    out: list[RunLimit] = []
    if mod.startswith("transformers") and cls.__name__.endswith("Trainer"):
        state = getattr(obj, "state", None)
        n = _int(getattr(state, "max_steps", None))
        a = getattr(obj, "args", None)
        if n and n > 0:
            what = ", ".join(f"{k}={getattr(a, k)}" for k in ("max_steps", "num_train_epochs",
                                                               "gradient_accumulation_steps") if a is not None)
            out.append(RunLimit("steps", float(n), f"Trainer.state.max_steps={n} (TrainingArguments: {what})", 1))
    trainer = obj if cls.__name__ == "Trainer" and mod.startswith(("lightning", "pytorch_lightning")) else getattr(obj, "trainer", None)
    tm = type(trainer).__module__ if trainer is not None else ""
    if trainer is not None and tm.startswith(("lightning", "pytorch_lightning")):
        for attr in ("estimated_stepping_batches", "max_steps"):
            try:
                n = _int(getattr(trainer, attr))
            except Exception:
                n = None
            if n and n > 0:
                out.append(RunLimit("steps", float(n), f"Lightning Trainer.{attr}={n}", 1))
                break
    return out


def probe(frame: types.FrameType | None = None) -> list[RunLimit]:
    """Every run limit visible from the current stack, most direct first (see the module docstring)."""
    frame = frame or sys._getframe(1)
    out: list[RunLimit] = []
    users: list[types.FrameType] = []
    for f in _frames(frame):
        slf = f.f_locals.get("self")
        if slf is not None:
            try:
                out += _framework_limits(slf)
            except Exception:
                pass
        if not _user_frame(f):
            continue
        users.append(f)
        try:
            out += named_limits(f)
        except Exception:
            pass
    try:
        out += loop_limits(users)
    except Exception:
        pass
    seen: set[tuple[str, float]] = set()
    uniq = []
    for lim in sorted(out, key=lambda x: x.priority):
        key = (lim.kind, lim.value)
        if key not in seen:
            seen.add(key)
            uniq.append(lim)
    return uniq


def epoch_steps(frame: types.FrameType | None = None) -> tuple[int, str] | None:
    """Optimizer steps in one epoch of the script's own loops, with no DataLoader
    (``_run_size_loops.epoch_loop_steps``), from the current stack; None when not known."""
    frame = frame or sys._getframe(1)
    try:
        return epoch_loop_steps([f for f in _frames(frame) if _user_frame(f)])
    except Exception:
        return None


# --- how often evaluation runs ------------------------------------------------------------
def _hf_eval_period(obj: Any) -> tuple[float, int, str] | None:
    cls = type(obj)
    if not ((cls.__module__ or "").startswith("transformers") and cls.__name__.endswith("Trainer")):
        return None
    a, state = getattr(obj, "args", None), getattr(obj, "state", None)
    strategy = str(getattr(a, "eval_strategy", getattr(a, "evaluation_strategy", "")) or "")
    strategy = strategy.rsplit(".", 1)[-1].lower()
    max_steps = _int(getattr(state, "max_steps", None)) or 0
    if strategy == "steps":
        n = getattr(a, "eval_steps", None) or getattr(a, "logging_steps", None)
        if isinstance(n, float) and 0 < n < 1 and max_steps:
            n = n * max_steps                        # a fraction of the run
        if n:
            return float(n), 0, f"TrainingArguments(eval_strategy='steps', eval_steps={getattr(a, 'eval_steps', None)})"
    if strategy == "epoch":
        epochs = float(getattr(a, "num_train_epochs", 0) or 0)
        if max_steps and epochs:
            return max_steps / epochs, 0, "TrainingArguments(eval_strategy='epoch')"
    return None


def eval_period(frame: types.FrameType | None = None) -> tuple[float, int, str, str] | None:
    """How often the evaluation now running recurs: ``(every_steps, extra, source, where)``.

    Walks the stack from the model call outwards: a trainer's own setting (Hugging Face
    ``eval_strategy``/``eval_steps``), else the nearest ``if`` around the call in the user's
    code that tests ``counter % N == 0``. None when neither says.
    """
    frame = frame or sys._getframe(1)
    where = ""
    for f in _frames(frame):
        slf = f.f_locals.get("self")
        if slf is not None:
            try:
                got = _hf_eval_period(slf)
            except Exception:
                got = None
            if got:
                return (*got, where)
        if not _user_frame(f):
            continue
        if not where:
            where = f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
        tree = _tree(_abspath(f.f_code.co_filename))
        if tree is None:
            continue
        for node in _enclosing_ifs(tree, f.f_lineno):
            got = _period_of(node.test, f)
            if got:
                n, extra, text = got
                return n, extra, f"if {text} ({os.path.basename(f.f_code.co_filename)}:{node.lineno})", where
    return None


def call_site(frame: types.FrameType | None = None) -> str:
    """``file:line`` of the innermost user frame on the stack."""
    for f in _frames(frame or sys._getframe(1)):
        if _user_frame(f):
            return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
    return ""
