"""The loops around the optimizer step, read from the user's source and valued in its live frames.

``loop_limits`` multiplies the loops around the step into a run length (a DataLoader's loop
counts epochs, a ``break`` on a counter caps the run, ``if i % k == 0: opt.step()`` divides
it); ``_period_of`` reads ``i % N == 0`` tests, which ``run_size.eval_period`` also uses.
The names a limit goes by (``STEP_NAMES``, ``EPOCH_NAMES``) are here because a loop's bound is
read as a limit by its name; ``run_size.named_limits`` reads the same names from the frames.
"""
from __future__ import annotations

import ast
import os
import types
from typing import Any, Iterator

from ccprof.artefacts.profile import RunLimit
from ccprof.profiler._run_size_eval import _abspath, _int, _tree, safe_eval

STEP_NAMES = ("max_iters", "max_steps", "num_steps", "total_steps", "train_steps", "num_train_steps",
              "max_iterations", "num_iterations", "iterations", "n_iters", "n_steps", "max_iter",
              "training_steps", "total_iters", "num_iters", "steps")
EPOCH_NAMES = ("num_train_epochs", "num_epochs", "max_epochs", "n_epochs", "epochs", "nepochs", "epoch_count")


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


def _unconditional_break(loop: ast.AST) -> ast.Break | None:
    """A ``break`` among the loop body's own statements (or inside a ``with`` there): the loop
    runs once, e.g. ``for xb, yb in loader: step(xb, yb); break`` takes one batch."""
    stack = list(loop.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Break):
            return node
        if isinstance(node, (ast.With, ast.AsyncWith)):
            stack.extend(node.body)
    return None


def _own_equal(test: ast.AST, own: set[str], frame: types.FrameType) -> tuple[ast.AST, int] | None:
    """``it == N`` (either side) where ``it`` is the for loop's own counter: (counter, N)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    for counter, bound in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
        if isinstance(counter, ast.Name) and counter.id in own:
            try:
                v = _int(safe_eval(bound, frame))
            except Exception:
                continue
            if v is not None and v >= 0:
                return counter, v
    return None


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
    brk = _unconditional_break(lp)
    if brk is not None:
        info["cap"], info["cap_text"] = 1, f"break ({where.format(brk.lineno)}): one iteration"
    for node in _own_ifs(lp):
        exits = [s for s in node.body if isinstance(s, (ast.Break, ast.Return))]
        if not exits:
            continue
        eq = _own_equal(node.test, own, frame) if isinstance(exits[0], ast.Break) else None
        if eq is not None:
            # ``if it == max_iters: break`` on the loop's own counter: the iterations before it
            # run the step; the one that breaks runs it too only when the test follows the step
            counter, v = eq
            left = max(v - _now(counter, frame) + (1 if node.lineno > frame.f_lineno else 0), 1)
            if info["cap"] is None or left < info["cap"]:
                info["cap"] = left
                info["cap_text"] = f"if {ast.unparse(node.test)}: break ({where.format(node.lineno)})"
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

def _epoch_loop(lp: ast.AST) -> bool:
    """``for epoch in ...`` or ``for _ in range(num_epochs)``: a loop that counts epochs."""
    if not isinstance(lp, ast.For):
        return False
    if any("epoch" in n.lower() for n in _targets(lp)):
        return True
    it = _unwrap_iter(lp.iter)
    names = {n.id.lower() for n in ast.walk(it) if isinstance(n, ast.Name)} | \
            {n.attr.lower() for n in ast.walk(it) if isinstance(n, ast.Attribute)}
    return any(n == e or n.endswith("_" + e) for n in names for e in EPOCH_NAMES)


def _walks_data(lp: ast.AST, frame: types.FrameType) -> bool:
    """A loop over the data itself: a list or tensor walked, or a range bounded by its size
    (``range(0, ids.size(1) - seq_length, seq_length)``, ``range(len(pairs))``), not by a count
    (``range(iters_per_epoch)``, which may draw random batches)."""
    if not isinstance(lp, ast.For):
        return False
    kind, _ = _iter_kind(lp, frame)
    if kind == "sized":
        return True
    it = _unwrap_iter(lp.iter)
    for node in ast.walk(it):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
            return True
        if isinstance(node, ast.Attribute) and node.attr in ("size", "shape"):
            return True
    return False


def epoch_loop_steps(frames: list[types.FrameType]) -> tuple[int, str] | None:
    """Optimizer steps in one epoch of a script with no DataLoader: one pass of the loops inside
    its epoch loop (``for epoch in range(num_epochs): for i in range(0, ids.size(1) - 30, 30):``
    -> the inner range's length), ``frames`` innermost first; None when there is no epoch loop,
    a loop inside it walks a DataLoader (its length is the epoch), has no known length or does
    not walk the data (``for it in range(iters_per_epoch)``).

    Returns (steps, "range(0, ids.size(1) - seq_length, seq_length) (main.py:68)")."""
    steps, parts = 1, []
    for f in frames:
        where = f"{os.path.basename(f.f_code.co_filename)}:{{}}"
        for lp in reversed(_loops(f)):                  # innermost first
            if _epoch_loop(lp):
                div = _step_divisor(frames[0]) if frames else None
                if div is not None:
                    steps = max(steps // div[0], 1)
                return (steps, " x ".join(reversed(parts))) if parts else None
            info = _loop_info(lp, f, where)
            count = info["count"] if info["cap"] is None else min(info["count"] or info["cap"], info["cap"])
            if info["loader"] or count is None or not _walks_data(lp, f):
                return None
            steps *= count
            parts.append(info["text"])
    return None


# --- `if i % N == 0` around a line: the optimizer step's divisor, evaluation's period ---------
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
