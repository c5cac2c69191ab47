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

import ast
import os
import sys
import types
from functools import lru_cache
from typing import Any, Iterator

from ccprof.artefacts.profile import RunLimit

__all__ = ["STEP_NAMES", "EPOCH_NAMES", "probe", "loop_limits", "named_limits", "safe_eval", "data_loop",
           "eval_period", "call_site"]

STEP_NAMES = ("max_iters", "max_steps", "num_steps", "total_steps", "train_steps", "num_train_steps",
              "max_iterations", "num_iterations", "iterations", "n_iters", "n_steps", "max_iter",
              "training_steps", "total_iters", "num_iters", "steps")
EPOCH_NAMES = ("num_train_epochs", "num_epochs", "max_epochs", "n_epochs", "epochs", "nepochs", "epoch_count")
_CONTAINERS = ("args", "config", "cfg", "opt", "opts", "hparams", "params", "conf", "hp", "FLAGS", "flags",
               "training_args", "train_config", "trainer_config")
_CCPROF = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBS = tuple({p for p in (sys.prefix, sys.base_prefix, getattr(sys, "real_prefix", "")) if p})


def _abspath(name: str) -> str:
    """``os.path.abspath`` that survives a script which deleted its own cwd."""
    try:
        return os.path.abspath(name)
    except OSError:
        return name


def _user_frame(frame: types.FrameType) -> bool:
    """A frame of the user's code: not ccprof, torch, the standard library or site-packages."""
    f = _abspath(frame.f_code.co_filename)
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
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("size", "numel", "dim") \
            and not node.keywords:
        import torch  # here: torch loads only on this path

        base = safe_eval(node.func.value, frame)
        if not isinstance(base, torch.Tensor):
            raise _Unsafe("call")
        return getattr(base, node.func.attr)(*[safe_eval(a, frame) for a in node.args])
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


def _limit_like(node: ast.AST) -> bool:
    """An expression that reads like a run limit: a constant, or a name/attribute ending in one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and node.value > 0
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    low = name.lower()
    return any(low == n or low.endswith("_" + n) for n in STEP_NAMES + EPOCH_NAMES)


def _loops(frame: types.FrameType, call_line: int | None = None) -> list[ast.AST]:
    """The for/while loops around the frame's current line, outermost first."""
    tree = _tree(_abspath(frame.f_code.co_filename))
    return [] if tree is None else _enclosing_loops(tree, call_line or frame.f_lineno)


def data_loop(frame: types.FrameType, call_line: int | None = None) -> ast.For | None:
    """The innermost ``for`` loop around the frame's current line that walks batches, or None."""
    return next((lp for lp in reversed(_loops(frame, call_line))
                 if isinstance(lp, ast.For) and _iterates_data(lp, frame)), None)


def _unwrap_iter(it: ast.AST) -> ast.AST:
    """``enumerate(x)``, ``tqdm(x)``, ``iter(x)``, ``zip(x, ...)``: x."""
    while isinstance(it, ast.Call) and isinstance(it.func, (ast.Name, ast.Attribute)) and it.args:
        name = it.func.id if isinstance(it.func, ast.Name) else it.func.attr
        if name not in ("enumerate", "tqdm", "iter", "zip", "trange", "progress_bar"):
            break
        if name == "trange":
            return ast.Call(func=ast.Name("range", ast.Load()), args=it.args, keywords=[])
        it = it.args[0]
    return it


def _iter_kind(node: ast.For, frame: types.FrameType) -> tuple[str, int | None]:
    """What a ``for`` loop walks: ("range", n), ("loader", None) for a DataLoader (its length is
    the epoch the profiler measured), ("sized", n) for a list/tensor/sized object, ("stream",
    None) for a generator, an iterator or anything not evaluated."""
    import torch.utils.data as tud  # here: torch loads only on this path

    it = _unwrap_iter(node.iter)
    n = _range_len(it, frame) if isinstance(it, ast.Call) else None
    if n is not None:
        return "range", n
    try:
        obj = safe_eval(it, frame)
    except Exception:
        return "stream", None
    if isinstance(obj, range):
        return "range", len(obj)
    if isinstance(obj, tud.DataLoader):
        return "loader", None
    if isinstance(obj, (str, bytes)) or not hasattr(obj, "__len__"):
        return "stream", None
    try:
        return "sized", len(obj)
    except Exception:
        return "stream", None


def _iterates_data(node: ast.For, frame: types.FrameType) -> bool:
    """True when a for loop walks a DataLoader (or a stream of batches), not a range or a list."""
    return _iter_kind(node, frame)[0] in ("loader", "stream")


def _compare_parts(test: ast.AST, frame: types.FrameType) -> list[tuple[ast.AST, int, int, str]]:
    """``counter OP bound`` comparisons in ``test`` (and its and/or parts) whose bound reads like a
    run limit: (counter node, bound value, +1 when the bound itself is still run, bound text).
    ``i > N`` / ``i <= N`` run the bound's own iteration too; ``i >= N`` / ``i < N`` do not."""
    tests = test.values if isinstance(test, ast.BoolOp) else [test]
    out = []
    for t in tests:
        if not (isinstance(t, ast.Compare) and len(t.ops) == 1):
            continue
        left, right, op = t.left, t.comparators[0], t.ops[0]
        flip = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}
        for counter, bound, o in ((left, right, type(op)), (right, left, flip.get(type(op)))):
            if o not in (ast.Lt, ast.LtE, ast.Gt, ast.GtE):
                continue
            if not isinstance(counter, (ast.Name, ast.Attribute)) or not _limit_like(bound):
                continue
            try:
                v = _int(safe_eval(bound, frame))
            except Exception:
                continue
            if v is not None and v > 0:
                out.append((counter, v, 1 if o in (ast.Gt, ast.LtE) else 0, ast.unparse(bound)))
                break
    return out


def _bound_of_compare(test: ast.AST, frame: types.FrameType) -> tuple[int, str] | None:
    """``i < N`` / ``N > i`` / ``i >= N`` (and ``and``/``or`` of those): N and its source text."""
    parts = _compare_parts(test, frame)
    return (parts[0][1], parts[0][3]) if parts else None


def _now(counter: ast.AST, frame: types.FrameType) -> int:
    try:
        v = _int(safe_eval(counter, frame))
    except Exception:
        v = None
    return v if v is not None and v >= 0 else 0


def _targets(node: ast.For) -> set[str]:
    return {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}


def _own_ifs(loop: ast.AST) -> Iterator[ast.If]:
    """``if`` statements in the loop's body that a ``break`` there would leave this loop from
    (not those inside a nested loop, function or class)."""
    stack = list(loop.body) + list(getattr(loop, "orelse", []) or [])
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.For, ast.While, ast.AsyncFor, ast.FunctionDef, ast.AsyncFunctionDef,
                             ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _loop_info(lp: ast.AST, frame: types.FrameType, where: str) -> dict[str, Any]:
    """One loop around the optimizer step: its iterations still to run (None: unknown), whether
    they are a DataLoader's epoch, a cap on its own counter, and caps on the whole run."""
    info: dict[str, Any] = {"count": None, "loader": False, "cap": None, "run_caps": [], "text": ""}
    own: set[str] = set()
    if isinstance(lp, ast.For):
        kind, n = _iter_kind(lp, frame)
        it = _unwrap_iter(lp.iter)
        info["text"] = f"{ast.unparse(it)} ({where.format(lp.lineno)})"
        info["loader"] = kind == "loader"
        info["count"] = n if kind in ("range", "sized") else None
        own = _targets(lp)
    elif isinstance(lp, ast.While):
        info["text"] = f"while {ast.unparse(lp.test)} ({where.format(lp.lineno)})"
        for counter, v, plus, _ in _compare_parts(lp.test, frame):
            info["count"] = max(v - _now(counter, frame) + plus, 1)
            break
    for node in _own_ifs(lp):
        exits = [s for s in node.body if isinstance(s, (ast.Break, ast.Return))]
        if not exits:
            continue
        for counter, v, plus, _ in _compare_parts(node.test, frame):
            left = max(v - _now(counter, frame) + plus, 1)
            text = f"if {ast.unparse(node.test)}: {'break' if isinstance(exits[0], ast.Break) else 'return'} " \
                   f"({where.format(node.lineno)})"
            cname = counter.id if isinstance(counter, ast.Name) else ""
            if isinstance(exits[0], ast.Break) and cname in own:
                info["cap"] = min(info["cap"] or left, left)     # this loop's own counter
                info["cap_text"] = text
            else:
                info["run_caps"].append((left, text))           # a step counter across loops
    return info


def _step_divisor(frame: types.FrameType) -> tuple[int, str] | None:
    """``if (i + 1) % accum == 0: optimizer.step()``: the loop runs ``accum`` iterations a step."""
    tree = _tree(_abspath(frame.f_code.co_filename))
    if tree is None:
        return None
    for node in _enclosing_ifs(tree, frame.f_lineno):
        got = _period_of(node.test, frame)
        if got and got[0] > 1:
            return int(got[0]), ast.unparse(node.test)
    return None


def loop_limits(frames: list[types.FrameType]) -> list[RunLimit]:
    """The run's length from the loops around the optimizer step, ``frames`` innermost first.

    Nested loops multiply: ``for epoch in range(5000): for d in range(20): opt.step()`` is 100,000
    steps. A DataLoader's loop counts epochs (its length is known to the profiler, accumulation
    included): the loops outside it give the number of epochs. A ``break`` on a loop's own
    counter caps that loop; one on another counter (``if iter_num > max_iters: break``) caps the
    run, from the counter's value at the first step (a resumed run has fewer steps left).
    """
    loops: list[tuple[ast.AST, types.FrameType, str]] = []
    for f in frames:
        where = f"{os.path.basename(f.f_code.co_filename)}:{{}}"
        for lp in reversed(_loops(f)):                  # innermost first
            loops.append((lp, f, where))
    if not loops:
        return []
    infos = [_loop_info(lp, f, where) for lp, f, where in loops]
    out: list[RunLimit] = []
    for info in infos:
        for left, text in info["run_caps"]:
            out.append(RunLimit("steps", float(left), text, 2))
    inner, outer, known = 1, 1, True
    loader: dict[str, Any] | None = None
    parts: list[str] = []
    for info in infos:
        count = info["count"]
        if info["cap"] is not None:
            count = min(count, info["cap"]) if count is not None else info["cap"]
        label = info["text"] + (f" capped by {info['cap_text']}" if info["cap"] is not None else "")
        if info["loader"] and loader is None and info["cap"] is None:
            loader = info
            parts.append(label)
            continue
        parts.append(label)
        if count is None:
            known = False
            break
        if loader is None:
            inner *= count
        else:
            outer *= count
    div = _step_divisor(frames[0]) if frames else None
    source = "loops: " + " x ".join(reversed(parts))
    if known and loader is not None:
        epochs = outer * inner if inner > 1 else outer
        src = (f"one pass of {source.removeprefix('loops: ')}" if epochs == 1 and len(parts) == 1 else source)
        out.append(RunLimit("epochs", float(epochs), src, 2))
    elif known:
        steps = inner
        if div is not None:
            steps = max(steps // div[0], 1)
            source += f" / {div[0]} (optimizer step under if {div[1]})"
        out.append(RunLimit("steps", float(steps), source, 2))
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


# --- how often evaluation runs ------------------------------------------------------------
def _enclosing_ifs(tree: ast.AST, line: int) -> list[ast.If]:
    """The ``if`` statements whose body (not ``else``) holds ``line``, innermost first."""
    out: list[ast.If] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and any(s.lineno <= line <= (s.end_lineno or s.lineno) for s in node.body):
            out.append(node)
    out.sort(key=lambda n: -n.lineno)
    return out


def _period_of(test: ast.AST, frame: types.FrameType) -> tuple[float, int, str] | None:
    """``i % N == 0`` / ``not i % N`` (inside ``and``/``or``): (N, extra episodes, source text).
    An ``or i == last`` beside it is one more episode per run."""
    parts = test.values if isinstance(test, ast.BoolOp) else [test]
    period, extra = None, 0
    for t in parts:
        mod = None
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
            for a, b in ((t.left, t.comparators[0]), (t.comparators[0], t.left)):
                if isinstance(a, ast.BinOp) and isinstance(a.op, ast.Mod) and isinstance(b, ast.Constant) and b.value == 0:
                    mod = a
            if mod is None and isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
                extra += 1                           # `or step == args.steps - 1`
        elif isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not) and isinstance(t.operand, ast.BinOp) \
                and isinstance(t.operand.op, ast.Mod):
            mod = t.operand
        if mod is not None and period is None:
            try:
                n = _int(safe_eval(mod.right, frame))
            except Exception:
                n = None
            if n and n > 0:
                period = float(n)
    if period is None:
        return None
    return period, extra, ast.unparse(test)


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
