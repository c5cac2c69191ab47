"""Reading the live stack without running the user's code: which frames are the user's, the
parsed source of their files, and a tiny evaluator of simple expressions in a frame.

What ``run_size`` and its loop reading build on; nothing here changes the script or raises into it
(``safe_eval`` raises ``_Unsafe``, which its callers catch).
"""
from __future__ import annotations

import ast
import os
import sys
import types
from functools import lru_cache
from typing import Any, Iterator

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


def safe_eval(node: ast.AST, frame: types.FrameType, _base: bool = False) -> Any:
    """Value of a simple expression in ``frame``: names, attributes, subscripts by constants,
    numbers, + - * // / and ``len()``/``int()``/``min()``/``max()`` of those. Raises _Unsafe else.
    A callable is never a value, but may be the object an attribute is read from: ``self`` in
    an ``nn.Module``'s method (``range(self.num_epochs)``) is callable."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        for scope in (frame.f_locals, frame.f_globals, vars(__builtins__) if isinstance(__builtins__, types.ModuleType) else __builtins__):
            if node.id in scope:
                v = scope[node.id]
                if callable(v) and not _base and node.id not in ("len", "int", "min", "max"):
                    raise _Unsafe(node.id)
                return v
        raise _Unsafe(node.id)
    if isinstance(node, ast.Attribute):
        base = safe_eval(node.value, frame, _base=True)
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


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return int(v) if v == v and abs(v) < 1e15 else None
