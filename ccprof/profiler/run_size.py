"""How long the run is meant to be, read from the live script at its first optimizer step.

The dollars of a run are its step time times its steps, so the steps must be the script's
own: a user who passes ``--max_iters 200`` means 200, whatever an infinite sampler's length
says. At the first optimizer step (the stack alive), :func:`probe` walks the Python frames
from the training loop outwards and collects, with where each came from:

1. a framework trainer in a frame's ``self``: Hugging Face ``Trainer.state.max_steps`` (what
   the Trainer computed from max_steps, epochs, the loader and accumulation), a Lightning
   ``Trainer``'s ``estimated_stepping_batches`` / ``max_steps``;
2. the loop around the optimizer step in the user's own code (its AST, its values from the
   frame): ``for ... in range(N)``, ``while it < N``, ``if it >= N: break`` -- steps; an outer
   ``for epoch in range(E)`` around a loop over a loader -- epochs;
3. attributes with a limit's name (``max_iters``, ``max_steps``, ``epochs``, ...) on the
   frames' ``args``/``config``/``self`` objects and the script's globals.

Each limit is a :class:`~ccprof.profiler.profile.RunLimit`; ``ccprof.hardware.cost.run_steps``
picks the most direct one. Nothing here changes the script or raises into it.
"""
from __future__ import annotations

import ast
import os
import sys
import types
from functools import lru_cache
from typing import Any, Iterator

from ccprof.profiler.profile import RunLimit

__all__ = ["STEP_NAMES", "EPOCH_NAMES", "probe", "loop_limits", "named_limits", "safe_eval"]

STEP_NAMES = ("max_iters", "max_steps", "num_steps", "total_steps", "train_steps", "num_train_steps",
              "max_iterations", "num_iterations", "iterations", "n_iters", "n_steps", "max_iter",
              "training_steps", "total_iters", "num_iters", "steps")
EPOCH_NAMES = ("num_train_epochs", "num_epochs", "max_epochs", "n_epochs", "epochs", "nepochs", "epoch_count")
_CONTAINERS = ("args", "config", "cfg", "opt", "opts", "hparams", "params", "conf", "hp", "FLAGS", "flags",
               "training_args", "train_config", "trainer_config")
_CCPROF = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBS = tuple({p for p in (sys.prefix, sys.base_prefix, getattr(sys, "real_prefix", "")) if p})


def _user_frame(frame: types.FrameType) -> bool:
    """A frame of the user's code: not ccprof, torch, the standard library or site-packages."""
    f = os.path.abspath(frame.f_code.co_filename)
    if f.startswith(_CCPROF) or "<" in frame.f_code.co_filename:
        return False
    if "site-packages" in f or "dist-packages" in f:
        return False
    return not any(f.startswith(os.path.join(p, "lib")) for p in _LIBS)


def _frames(frame: types.FrameType | None) -> Iterator[types.FrameType]:
    while frame is not None:
        yield frame
        frame = frame.f_back


# --- a tiny evaluator: names, attributes, constants and arithmetic, nothing that runs code ----
class _Unsafe(Exception):
    pass


def safe_eval(node: ast.AST, frame: types.FrameType) -> Any:
    """Value of a simple expression in ``frame``: names, attributes, subscripts by constants,
    numbers, + - * // / and ``len()``/``int()``/``min()``/``max()`` of those. Raises _Unsafe else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        for scope in (frame.f_locals, frame.f_globals, vars(__builtins__) if isinstance(__builtins__, types.ModuleType) else __builtins__):
            if node.id in scope:
                v = scope[node.id]
                if callable(v) and node.id not in ("len", "int", "min", "max"):
                    raise _Unsafe(node.id)
                return v
        raise _Unsafe(node.id)
    if isinstance(node, ast.Attribute):
        base = safe_eval(node.value, frame)
        v = getattr(base, node.attr)
        if isinstance(v, property) or (callable(v) and not isinstance(v, (int, float))):
            raise _Unsafe(node.attr)
        return v
    if isinstance(node, ast.Subscript):
        base = safe_eval(node.value, frame)
        key = safe_eval(node.slice, frame)
        if not isinstance(base, (dict, list, tuple)):
            raise _Unsafe("subscript")
        return base[key]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -safe_eval(node.operand, frame)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Div)):
        a, b = safe_eval(node.left, frame), safe_eval(node.right, frame)
        if not all(isinstance(x, (int, float)) for x in (a, b)):
            raise _Unsafe("arith")
        return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}.get(type(node.op)) if not isinstance(
            node.op, (ast.FloorDiv, ast.Div)) else (a // b if isinstance(node.op, ast.FloorDiv) else a / b)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("len", "int", "min", "max") \
            and not node.keywords:
        args = [safe_eval(a, frame) for a in node.args]
        if node.func.id == "len":
            obj = args[0]
            if not hasattr(obj, "__len__"):
                raise _Unsafe("len")
            return len(obj)
        return {"int": int, "min": min, "max": max}[node.func.id](*args)
    raise _Unsafe(type(node).__name__)


@lru_cache(maxsize=32)
def _tree(path: str) -> ast.AST | None:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None


def _enclosing_loops(tree: ast.AST, line: int) -> list[ast.AST]:
    """The for/while loops whose body holds ``line``, outermost first."""
    out: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            end = getattr(child, "end_lineno", None)
            if end is None or not (child.lineno <= line <= end):
                continue
            if isinstance(child, (ast.For, ast.While)) and any(
                    s.lineno <= line <= (s.end_lineno or s.lineno) for s in child.body):
                out.append(child)
            visit(child)
    visit(tree)
    return out


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return int(v) if v == v and abs(v) < 1e15 else None


def _range_len(call: ast.Call, frame: types.FrameType) -> int | None:
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "range"):
        return None
    try:
        args = [_int(safe_eval(a, frame)) for a in call.args]
    except Exception:
        return None
    if any(a is None for a in args) or not args:
        return None
    return len(range(*args))


def _iterates_data(node: ast.For, frame: types.FrameType) -> bool:
    """True when a for loop walks a DataLoader or another sized non-range iterable of batches."""
    it = node.iter
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id in ("enumerate", "zip", "tqdm") and it.args:
        it = it.args[0]
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
        return False
    try:
        obj = safe_eval(it, frame)
    except Exception:
        return True          # a call we do not evaluate (loader(), iter(...)): data
    return not isinstance(obj, range)


def _bound_of_compare(test: ast.AST, frame: types.FrameType) -> tuple[int, str] | None:
    """``i < N`` / ``N > i`` / ``i >= N`` (and ``and``/``or`` of those): N and its source text."""
    tests = test.values if isinstance(test, ast.BoolOp) else [test]
    for t in tests:
        if not (isinstance(t, ast.Compare) and len(t.ops) == 1):
            continue
        left, right, op = t.left, t.comparators[0], t.ops[0]
        for counter, bound, ok in ((left, right, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)),
                                   (right, left, (ast.Lt, ast.LtE, ast.Gt, ast.GtE))):
            if not isinstance(op, ok) or not isinstance(counter, (ast.Name, ast.Attribute)):
                continue
            if not _limit_like(bound):
                continue
            try:
                v = _int(safe_eval(bound, frame))
            except Exception:
                continue
            if v is not None and v > 0:
                return v, ast.unparse(bound)
    return None


def _limit_like(node: ast.AST) -> bool:
    """An expression that reads like a run limit: a constant, or a name/attribute ending in one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and node.value > 0
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    low = name.lower()
    return any(low == n or low.endswith("_" + n) for n in STEP_NAMES + EPOCH_NAMES)


def _loops(frame: types.FrameType, call_line: int | None = None) -> list[ast.AST]:
    tree = _tree(os.path.abspath(frame.f_code.co_filename))
    return [] if tree is None else _enclosing_loops(tree, call_line or frame.f_lineno)


def data_loop(frame: types.FrameType, call_line: int | None = None) -> ast.For | None:
    """The innermost ``for`` loop around the frame's current line that walks batches, or None."""
    return next((lp for lp in reversed(_loops(frame, call_line))
                 if isinstance(lp, ast.For) and _iterates_data(lp, frame)), None)


def loop_limits(frame: types.FrameType, call_line: int | None = None, data_below: bool = False) -> list[RunLimit]:
    """Limits of the loops around ``call_line`` (default: the frame's current line) in the frame's file.

    A ``range`` loop outside a loop over batches counts epochs; so does one in an outer frame
    when an inner frame walks the batches (``data_below``: ``for epoch in ...: train(loader)``).
    """
    line = call_line or frame.f_lineno
    where = f"{os.path.basename(frame.f_code.co_filename)}:{{}}"
    loops = _loops(frame, line)
    out: list[RunLimit] = []
    inner_data = data_loop(frame, line)
    for lp in reversed(loops):                         # innermost first
        if isinstance(lp, ast.For):
            n = _range_len(lp.iter, frame)
            if n is not None and n > 0:
                target = ast.unparse(lp.target).lower()
                outer = (data_below and inner_data is None) or (
                    inner_data is not None and lp is not inner_data and loops.index(lp) < loops.index(inner_data))
                kind = "epochs" if outer or "epoch" in target else "steps"
                out.append(RunLimit(kind, float(n), f"for ... in {ast.unparse(lp.iter)} ({where.format(lp.lineno)})", 2))
        elif isinstance(lp, ast.While):
            b = _bound_of_compare(lp.test, frame)
            if b:
                out.append(RunLimit("steps", float(b[0]), f"while {ast.unparse(lp.test)} ({where.format(lp.lineno)})", 2))
        # a break on a bound anywhere in the loop's own body
        for node in ast.walk(lp):
            if isinstance(node, ast.If) and any(isinstance(s, (ast.Break, ast.Return)) for s in node.body):
                b = _bound_of_compare(node.test, frame)
                if b:
                    kind = "epochs" if any(k in b[1].lower() for k in ("epoch",)) else "steps"
                    out.append(RunLimit(kind, float(b[0]), f"if {ast.unparse(node.test)}: break "
                                                           f"({where.format(node.lineno)})", 2))
    return out


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
    depth = 0
    data_below = False
    one_pass: RunLimit | None = None
    for f in _frames(frame):
        slf = f.f_locals.get("self")
        if slf is not None:
            try:
                out += _framework_limits(slf)
            except Exception:
                pass
        if not _user_frame(f):
            continue
        try:
            # loops of the frame nearest the optimizer step rank first, outer frames after
            out += [RunLimit(x.kind, x.value, x.source, x.priority + 0.1 * depth)
                    for x in loop_limits(f, data_below=data_below)]
            out += named_limits(f)
            dl = data_loop(f)
            if dl is not None:
                data_below = True
                if one_pass is None:
                    one_pass = RunLimit("epochs", 1.0, f"one pass of for ... in {ast.unparse(dl.iter)} "
                                                       f"({os.path.basename(f.f_code.co_filename)}:{dl.lineno}), "
                                                       "no loop around it", 4.5)
        except Exception:
            pass
        depth += 1
    if one_pass is not None and not any(int(x.priority) <= 2 for x in out):
        out.append(one_pass)
    seen: set[tuple[str, float]] = set()
    uniq = []
    for lim in sorted(out, key=lambda x: x.priority):
        key = (lim.kind, lim.value)
        if key not in seen:
            seen.add(key)
            uniq.append(lim)
    return uniq
