"""Where each knob is: the calls in the user's code that built the loader, the optimizer, the
models (``Profile.sites``), and where each value they were given came from.

The Session calls a :class:`SiteRecorder` from its hooks while the user's frames are alive
(``DataLoader.__init__``, ``Optimizer.__init__``, ``nn.Module.__init__``, a trained root's
forward, ``Accelerator``, ``TrainingArguments``, ``ArgumentParser.parse_known_args``). For each
value (a loader's batch size, an optimizer's learning rate) :func:`resolve` reads the call at its
line with ``ast`` and finds where the value is written:

1. written at the call (``batch_size=64``): ``literal``; left out: ``default``;
2. an expression that reads a path (``args.bs``, ``config.batch_size``, ``batch_size``): the path's
   value is checked against the run's, a function parameter is followed to its caller's argument
   (``get_dataloader(ds, args.bs)``), and the object a path starts from is looked for in the outer
   frames, so the path is reported as the script's own frame sees it (``config.trainer.batch_size``
   for minGPT's ``config.batch_size`` in ``Trainer.run``);
3. otherwise a path in the frames whose last part names the parameter (or a synonym) and whose
   value is the run's (``args.train_batch_size``), innermost frame out.

A path from a parsed ``argparse.Namespace`` gets its option, default and ``add_argument`` line; a
module global or config attribute gets the literal assignment that set its default and the
``--name=value`` / ``--trainer.batch_size=16`` argument that overrode it. Nothing here raises into
the user's script: any failure drops that site or that setting.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import os
import sys
import types
import weakref
from collections import Counter
from functools import lru_cache
from typing import Any, Iterable

from ccprof.artefacts.profile import CallSite, Setting
from ccprof.profiler._run_size_eval import _abspath, _tree, _user_frame

__all__ = ["SiteRecorder", "SYNONYMS", "resolve", "user_frames"]

# the names a value goes by in the scripts ccprof meets (the last part of a path)
_BATCH = ("batch_size", "bs", "batch", "train_batch_size", "per_device_train_batch_size", "micro_batch_size",
          "minibatch_size", "B")
_WORKERS = ("num_workers", "workers", "n_workers", "dataloader_num_workers")
_ACCUM = ("gradient_accumulation_steps", "grad_accum_steps", "accumulation_steps", "grad_accumulation_steps",
          "accum_steps")
SYNONYMS: dict[str, tuple[str, ...]] = {
    "batch_size": _BATCH,
    "per_device_train_batch_size": _BATCH,
    "num_workers": _WORKERS,
    "dataloader_num_workers": _WORKERS,
    "lr": ("lr", "learning_rate", "base_lr", "max_lr"),
    "gradient_accumulation_steps": _ACCUM,
    "mixed_precision": ("mixed_precision", "precision"),
    "pin_memory": ("pin_memory",),
    "persistent_workers": ("persistent_workers",),
    "fused": ("fused",),
    "foreach": ("foreach",),
    "bf16": ("bf16",),
    "fp16": ("fp16",),
}
MAX_DEPTH = 3              # args.batch_size, config.trainer.batch_size, cfg["train"]["bs"]
MAX_VISITS = 2000          # objects looked at per search: a script's globals can be large
MAX_STACK = 12             # user frames kept per site
_INNER = ("<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>", "<lambda>")

_USER: dict[types.CodeType, bool] = {}


def _is_user(frame: types.FrameType) -> bool:
    code = frame.f_code
    hit = _USER.get(code)
    if hit is None:
        hit = _USER[code] = _user_frame(frame)
    return hit


def user_frames(frame: types.FrameType | None) -> list[types.FrameType]:
    """The user's frames from ``frame`` outward (ccprof, torch, the standard library and
    site-packages skipped), at most ``MAX_STACK``."""
    out = []
    while frame is not None and len(out) < MAX_STACK:
        if _is_user(frame):
            out.append(frame)
        frame = frame.f_back
    return out


def _self_of(frame: types.FrameType) -> Any:
    code = frame.f_code
    if not code.co_argcount:
        return None
    return frame.f_locals.get(code.co_varnames[0])


def constructing_frame(obj: Any, frame: types.FrameType | None) -> types.FrameType | None:
    """The frame that called ``obj``'s constructor: past the ``__init__`` (and ``__post_init__``)
    frames of ``obj``'s classes."""
    while frame is not None and frame.f_code.co_name in ("__init__", "__post_init__") and _self_of(frame) is obj:
        frame = frame.f_back
    return frame


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    try:
        return float(v)
    except Exception:
        return str(v)


def _same(a: Any, b: Any) -> bool:
    """Equal as settings: a bool is not an int, an int may equal a float."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


# --- reading the call at its line ----------------------------------------------------------
@lru_cache(maxsize=64)
def _calls(path: str) -> tuple[ast.Call, ...]:
    tree = _tree(path)
    if tree is None:
        return ()
    return tuple(n for n in ast.walk(tree) if isinstance(n, ast.Call))


def _func_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def call_at(path: str, line: int, names: Iterable[str], params: Iterable[str] = ()) -> ast.Call | None:
    """The call spanning ``line`` of ``path`` whose function is one of ``names`` (the innermost),
    else one that passes one of ``params`` by keyword (an alias: ``DL(ds, batch_size=8)``)."""
    names, params = set(names), set(params)
    spanning = [c for c in _calls(path) if c.lineno <= line <= (c.end_lineno or c.lineno)]
    for ok in (lambda c: _func_name(c) in names, lambda c: any(k.arg in params for k in c.keywords)):
        hits = [c for c in spanning if ok(c)]
        if hits:
            return min(hits, key=lambda c: ((c.end_lineno or c.lineno) - c.lineno, c.end_col_offset or 0))
    return None


@lru_cache(maxsize=128)
def _positional(cls_or_fn: Any) -> tuple[str, ...]:
    try:
        sig = inspect.signature(cls_or_fn)
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in sig.parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _argument(call: ast.Call, name: str, positional: tuple[str, ...]) -> tuple[ast.expr | None, bool]:
    """The expression ``call`` passes for parameter ``name``, and whether a ``**mapping`` (or
    ``*args``) could have passed it instead."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value, False
    spread = any(kw.arg is None for kw in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args)
    if name in positional:
        i = positional.index(name)
        if i < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args[:i + 1]):
            return call.args[i], False
    return None, spread


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except Exception:
        return False, None


# --- paths: args.batch_size, config.trainer.batch_size, cfg["train"]["bs"] ------------------
Path = tuple  # (("name", "cfg"), ("item", "train"), ("attr", "bs"))


def _path_of(node: ast.expr) -> Path | None:
    if isinstance(node, ast.Name):
        return (("name", node.id),)
    if isinstance(node, ast.Attribute):
        base = _path_of(node.value)
        return None if base is None else base + (("attr", node.attr),)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
            and isinstance(node.slice.value, (str, int)):
        base = _path_of(node.value)
        return None if base is None else base + (("item", node.slice.value),)
    return None


def path_text(path: Path) -> str:
    out = ""
    for kind, key in path:
        out += key if kind == "name" else f".{key}" if kind == "attr" else f"[{key!r}]"
    return out


def _fields(obj: Any) -> dict[str, Any] | None:
    """What a path may step into without running the object's code: a dict's string keys, the
    ``__dict__`` of a plain object, Namespace or dataclass (a slotted dataclass's fields)."""
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, (type, types.ModuleType, types.FunctionType, types.MethodType)) or _is_lib_object(obj):
        return None
    try:
        d = object.__getattribute__(obj, "__dict__")     # no __getattr__ of the user's runs
    except AttributeError:
        d = None
    if isinstance(d, dict):
        return d
    if dataclasses.is_dataclass(obj):
        try:
            return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        except Exception:
            return None
    return None


def _is_lib_object(obj: Any) -> bool:
    """Objects whose insides are no user setting: torch's (modules, tensors, optimizers,
    loaders), NumPy's."""
    mod = type(obj).__module__ or ""
    if mod.startswith(("torch", "numpy", "transformers.models", "accelerate")):
        return True
    try:
        import torch.nn as nn  # here: torch is loaded by the time a site is recorded

        return isinstance(obj, nn.Module)
    except Exception:
        return False


def _step(obj: Any, kind: str, key: Any) -> tuple[bool, Any]:
    if kind == "item":
        if isinstance(obj, dict) and key in obj:
            return True, obj[key]
        return False, None
    d = _fields(obj)
    if d is not None and not isinstance(obj, dict) and key in d:
        return True, d[key]
    return False, None


def _scope_dicts(frame: types.FrameType) -> list[tuple[str, dict[str, Any]]]:
    """A frame's locals, then its module's globals (one dict when they are the same)."""
    local = frame.f_locals
    if local is frame.f_globals or frame.f_code.co_name == "<module>":
        return [("global", frame.f_globals)]
    return [("local", local), ("global", frame.f_globals)]


def eval_path(path: Path, frame: types.FrameType) -> tuple[bool, Any, str]:
    """The value of ``path`` in ``frame`` (``ok``, value, ``"local"``/``"global"``)."""
    kind0, name = path[0]
    for scope, d in _scope_dicts(frame):
        if name in d:
            obj = d[name]
            for kind, key in path[1:]:
                ok, obj = _step(obj, kind, key)
                if not ok:
                    return False, None, scope
            return True, obj, scope
    return False, None, ""


def _walk(frame: types.FrameType, scopes: Iterable[str] = ("local", "global")) -> Iterable[tuple[str, Path, Any]]:
    """(scope, path, value) for every path of depth <= MAX_DEPTH in the frame's locals and
    globals, breadth first; modules, classes, functions and library objects are not entered."""
    visits = 0
    for scope, d in _scope_dicts(frame):
        if scope not in scopes:
            continue
        level: list[tuple[Path, Any]] = []
        for k, v in list(d.items()):
            if not isinstance(k, str) or k.startswith("__") or isinstance(
                    v, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)):
                continue
            level.append(((("name", k),), v))
        depth = 1
        seen: set[int] = set()
        while level and visits < MAX_VISITS:
            nxt = []
            for path, v in level:
                visits += 1
                yield scope, path, v
                if depth >= MAX_DEPTH or isinstance(v, (str, bytes, int, float, bool)) or v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                fields = _fields(v)
                if not fields:
                    continue
                kind = "item" if isinstance(v, dict) else "attr"
                for k, child in list(fields.items())[:200]:
                    if isinstance(k, str) and not k.startswith("_"):
                        nxt.append((path + ((kind, k),), child))
            level, depth = nxt, depth + 1


def find_object(obj: Any, frame: types.FrameType) -> tuple[str, Path] | None:
    """A path to ``obj`` itself (by identity) in ``frame``."""
    for scope, path, v in _walk(frame):
        if v is obj:
            return scope, path
    return None


def find_by_name(name: str, value: Any, frame: types.FrameType) -> tuple[str, Path] | None:
    """A path in ``frame`` whose last part names ``name`` (or a synonym) and whose value is ``value``;
    a function's own parameters are skipped (their value came from its caller)."""
    names = SYNONYMS.get(name, (name,))
    code = frame.f_code
    params = set(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    for scope, path, v in _walk(frame):
        if path[-1][1] in names and _same(_scalar(v), value):
            if len(path) == 1 and scope == "local" and path[0][1] in params:
                continue
            return scope, path
    return None


# --- argparse: the namespaces the script parsed ---------------------------------------------
class Parses:
    """Each ``parse_known_args`` of the run: its namespace (weakly) and the options (dest ->
    option strings, default, the ``add_argument`` line)."""

    def __init__(self) -> None:
        self.namespaces: dict[int, tuple[weakref.ref, dict[str, argparse.Action]]] = {}
        self.added: dict[int, tuple[argparse.Action, str, int]] = {}     # id(action) -> (action, file, line)

    def on_add(self, action: Any, frame: types.FrameType | None) -> None:
        users = user_frames(frame)
        if isinstance(action, argparse.Action) and users:
            self.added[id(action)] = (action, users[0].f_code.co_filename, users[0].f_lineno)

    def on_parse(self, parser: argparse.ArgumentParser, namespace: Any) -> None:
        try:
            ref = weakref.ref(namespace)
        except TypeError:
            return
        actions = {a.dest: a for a in parser._actions if a.dest and a.dest != argparse.SUPPRESS and a.option_strings}
        old = self.namespaces.get(id(namespace))
        if old is not None and old[0]() is namespace:
            actions = {**old[1], **actions}
        self.namespaces[id(namespace)] = (ref, actions)

    def actions_of(self, namespace: Any) -> dict[str, argparse.Action] | None:
        hit = self.namespaces.get(id(namespace))
        return hit[1] if hit is not None and hit[0]() is namespace else None

    def by_dest(self, dest: str, value: Any) -> tuple[Any, argparse.Action] | None:
        """A parsed namespace with option ``dest`` whose value is ``value``."""
        for ref, actions in self.namespaces.values():
            ns = ref()
            if ns is not None and dest in actions and _same(_scalar(getattr(ns, dest, None)), value):
                return ns, actions[dest]
        return None

    def where(self, action: argparse.Action) -> tuple[str, int]:
        hit = self.added.get(id(action))
        return (hit[1], hit[2]) if hit is not None and hit[0] is action else ("", 0)


def _long(options: Iterable[str]) -> str:
    options = list(options)
    return next((o for o in options if o.startswith("--")), options[0] if options else "")


def argv_for_option(argv: list[str], options: Iterable[str], takes_value: bool = True) -> tuple[str, str]:
    """The argument(s) that set an option (``"--bs 4"``, ``"--bs=4"``), and the option used."""
    options = list(options)
    for i, a in enumerate(argv):
        for o in options:
            if a.startswith(o + "=") and takes_value:
                return a, o
            if a == o:
                if not takes_value:
                    return a, o
                if i + 1 < len(argv):
                    return f"{a} {argv[i + 1]}", o
    return "", ""


def _norm(text: str) -> str:
    return text.lstrip("-").replace("-", "_")


def _argv_value_matches(text: str, value: Any) -> bool:
    if isinstance(value, bool):
        return text.lower() in (("true", "1", "yes") if value else ("false", "0", "no"))
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return text.strip("'\"") == str(value)


def argv_for_path(argv: list[str], path: Path, value: Any) -> str:
    """The ``--name=value`` (nanoGPT, for a module global) or ``--trainer.batch_size=16`` (minGPT,
    the tail of an attribute path) argument that set ``value``: the longest tail of the path's
    parts that an argument names, with the run's value."""
    parts = [str(key) for _, key in path]
    best, best_len = "", 0
    for i, a in enumerate(argv):
        if not a.startswith("--"):
            continue
        if "=" in a:
            key, text, shown = a.split("=", 1)[0], a.split("=", 1)[1], a
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, text, shown = a, argv[i + 1], f"{a} {argv[i + 1]}"
        else:
            continue
        want = _norm(key).split(".")
        n = len(want)
        if n <= len(parts) and parts[-n:] == want and n > best_len and _argv_value_matches(text, value):
            best, best_len = shown, n
    return best


# --- literal assignments: batch_size = 128, C.batch_size = 64 ---------------------------------
@lru_cache(maxsize=64)
def _assignments(path: str) -> tuple[tuple[str, int, Any, bool], ...]:
    """(target text, line, literal value, at module level) of each ``x = <literal>`` in a file."""
    tree = _tree(path)
    if tree is None:
        return ()
    top = {id(s) for s in getattr(tree, "body", [])}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            ok, lit = _literal(node.value)
            if not ok:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, (ast.Name, ast.Attribute, ast.Subscript)):
                    out.append((ast.unparse(t), node.lineno, lit, id(node) in top))
    return tuple(out)


def _tail_match(target: str, path: Path) -> int:
    """How many trailing parts of ``path`` the assignment target ``target`` ends with (>= 1 when
    its last part is the path's)."""
    tpath = _path_of(ast.parse(target, mode="eval").body) if target else None
    if not tpath:
        return 0
    n = 0
    for a, b in zip(reversed(tpath), reversed(path)):
        if a[1] != b[1]:
            break
        n += 1
    return n


def literal_assignment(path: Path, kind: str, files: list[str], value: Any = None,
                       overridden: bool = False) -> tuple[str, int, Any] | None:
    """Where a global's or attribute's default is written: ``batch_size = 128`` at the module
    level of the first file, or the ``X.batch_size = 64`` whose target shares the longest tail
    with ``path`` in ``files`` (sharing only the last part, its literal must be the run's value,
    unless the command line ``overridden`` it)."""
    if kind == "global" and len(path) == 1:
        for f in files[:1]:
            for target, line, lit, top in _assignments(f):
                if top and target == path[0][1]:
                    return f, line, lit
        return None
    if kind != "attribute":
        return None
    best, best_n = None, 0
    for f in files:
        for target, line, lit, _top in _assignments(f):
            if "." not in target and "[" not in target:
                continue
            try:
                n = _tail_match(target, path)
            except SyntaxError:
                continue
            if n > best_n and (n >= 2 or overridden or _same(_scalar(lit), value)):
                best, best_n = (f, line, lit), n
    return best


# --- resolving one value ----------------------------------------------------------------------
def resolve(name: str, value: Any, users: list[types.FrameType], call: ast.Call | None,
            positional: tuple[str, ...], parses: Parses, argv: list[str], script: str = "") -> Setting:
    """Where ``value``, the run's ``name`` at the call in ``users[0]`` (``call``: its AST, None
    when not found), came from. ``users``: the user's frames, innermost first, alive."""
    return dataclasses.replace(_resolve(name, value, users, call, positional, parses, argv, script), name=name)


def _resolve(name: str, value: Any, users: list[types.FrameType], call: ast.Call | None,
             positional: tuple[str, ...], parses: Parses, argv: list[str], script: str = "") -> Setting:
    value = _scalar(value)
    call_file, call_line = (users[0].f_code.co_filename, users[0].f_lineno) if users else ("", 0)
    base = Setting(name=name, value=value)
    expr = None
    if call is not None:
        expr, spread = _argument(call, name, positional)
        if expr is None and spread:
            expr, spread = _from_mapping(call, name, users[0])
        if expr is None and not spread:
            return dataclasses.replace(base, kind="default", file=call_file, line=call.lineno)
        if expr is not None:
            code = ast.unparse(expr) if _in_call(call, expr) else f"**{ast.unparse(expr.value)}"
            ok, lit = _literal(expr)
            if ok:
                return dataclasses.replace(base, code=code, kind="literal", file=call_file, line=call.lineno)
            found = _follow(expr, 0, value, users, parses, argv, script)
            if found is not None:
                return dataclasses.replace(found, code=code)
            base = dataclasses.replace(base, code=code)
    for i, frame in enumerate(users):
        hit = find_by_name(name, value, frame)
        if hit is not None:
            return _setting(base, hit[0], hit[1], i, users, parses, argv, script)
    hit2 = parses.by_dest(name, value)
    if hit2 is not None:
        return _from_action(base, hit2[1], argv, parses)
    if expr is not None:
        # a function's parameter whose caller could not be read (a generator resumed by next(), a
        # functools.partial): where the function itself holds it
        found = _follow(expr, 0, value, users, parses, argv, script, params_ok=True)
        if found is not None:
            return dataclasses.replace(found, code=base.code)
    return base


def _in_call(call: ast.Call, expr: ast.expr) -> bool:
    return any(expr is n for n in ast.walk(call))


def _from_mapping(call: ast.Call, name: str, frame: types.FrameType) -> tuple[ast.expr | None, bool]:
    """``**extra_args`` at the call: the expression ``extra_args['fused']`` when the mapping holds
    ``name``; (None, False) when every mapping is known and none does (the default applies)."""
    if any(isinstance(a, ast.Starred) for a in call.args):
        return None, True
    for kw in call.keywords:
        if kw.arg is not None:
            continue
        path = _path_of(kw.value)
        ok, mapping, _ = eval_path(path, frame) if path is not None else (False, None, "")
        if not ok or not isinstance(mapping, dict):
            return None, True
        if name in mapping:
            return ast.Subscript(value=kw.value, slice=ast.Constant(name), ctx=ast.Load()), False
    return None, False


def _follow(expr: ast.expr, i: int, value: Any, users: list[types.FrameType], parses: Parses,
            argv: list[str], script: str, hops: int = 0, params_ok: bool = False) -> Setting | None:
    """The setting ``expr`` (evaluated in ``users[i]``) reads, when its value is the run's; a
    parameter of the frame's function that cannot be followed to its caller is None unless
    ``params_ok`` (then the function's local)."""
    path = _path_of(expr)
    frame = users[i]
    if path is None or hops > 6:
        return None
    ok, v, scope = eval_path(path, frame)
    if not ok or not _same(_scalar(v), value):
        return None
    code = frame.f_code
    params = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    root = path[0][1]
    if scope == "local" and root in params and i + 1 < len(users) and users[i + 1] is frame.f_back:
        # a parameter: what the caller passed for it, in the caller's frame
        caller = users[i + 1]
        call = call_at(caller.f_code.co_filename, caller.f_lineno, (code.co_name,))
        if call is not None:
            pos = code.co_varnames[:code.co_argcount]
            if pos and pos[0] in ("self", "cls") and isinstance(call.func, ast.Attribute):
                pos = pos[1:]
            arg, spread = _argument(call, root, tuple(pos))
            if arg is not None and len(path) == 1:
                ok_lit, _ = _literal(arg)
                if ok_lit:
                    return Setting(name="", value=value, kind="literal", file=caller.f_code.co_filename,
                                   line=call.lineno, scope_file=caller.f_code.co_filename,
                                   scope_line=caller.f_lineno, scope_function=caller.f_code.co_name)
                hit = _follow(arg, i + 1, value, users, parses, argv, script, hops + 1)
                if hit is not None:
                    return hit
            elif arg is None and not spread and len(path) == 1:
                # the parameter's own default, written at the def
                return Setting(name="", value=value, kind="literal", file=code.co_filename,
                               line=code.co_firstlineno, default=value)
    # the object the path starts from, as an outer frame (the script's, preferably) reaches it
    if len(path) > 1:
        obj = (frame.f_locals if scope == "local" else frame.f_globals).get(root)
        for j in range(len(users) - 1, i, -1):
            try:
                hit = find_object(obj, users[j])
            except Exception:
                continue
            if hit is not None:
                return _setting(Setting(name="", value=value), hit[0], hit[1] + path[1:], j, users, parses, argv,
                                script)
    if len(path) == 1 and scope == "local" and root in params and not params_ok:
        return None
    return _setting(Setting(name="", value=value), scope, path, i, users, parses, argv, script)


def _setting(base: Setting, scope: str, path: Path, i: int, users: list[types.FrameType], parses: Parses,
             argv: list[str], script: str) -> Setting:
    frame = users[i]
    where = dict(path=path_text(path), scope_file=frame.f_code.co_filename, scope_line=frame.f_lineno,
                 scope_function=frame.f_code.co_name)
    # an option of a parsed namespace: args.batch_size
    if len(path) >= 2:
        ok, ns, _ = eval_path(path[:-1], frame)
        actions = parses.actions_of(ns) if ok else None
        if actions and path[-1][1] in actions:
            return _from_action(dataclasses.replace(base, **where), actions[path[-1][1]], argv, parses)
    kind = ("global" if scope == "global" else "local") if len(path) == 1 else "attribute"
    out = dataclasses.replace(base, kind=kind, **where)
    files = [f.f_code.co_filename for f in users[i:]]
    if kind == "global":
        files = [frame.f_code.co_filename]
    elif kind == "attribute":
        files = list(dict.fromkeys([frame.f_code.co_filename] + [f.f_code.co_filename for f in users]
                                   + [f for f in _module_files(path, frame)]))
    if kind not in ("global", "attribute"):
        return out
    shown = argv_for_path(argv, path, out.value)
    if shown:
        out = dataclasses.replace(out, argv=shown, flag=shown.split("=", 1)[0].split(" ", 1)[0])
    lit = literal_assignment(path, kind, files, out.value, bool(shown))
    if lit is not None:
        out = dataclasses.replace(out, file=lit[0], line=lit[1], default=_scalar(lit[2]))
    return out


def _module_files(path: Path, frame: types.FrameType) -> list[str]:
    """The source files of the classes along an attribute path (where ``C.batch_size = 64`` of a
    config's defaults may be written)."""
    out = []
    ok, obj, _ = eval_path(path[:1], frame)
    for kind, key in path[1:]:
        if not ok:
            break
        mod = sys.modules.get(type(obj).__module__ or "")
        f = getattr(mod, "__file__", None)
        if f:
            out.append(f)
        ok, obj = _step(obj, kind, key)
    return out


def _from_action(base: Setting, action: argparse.Action, argv: list[str], parses: Parses) -> Setting:
    takes = action.nargs != 0
    shown, used = argv_for_option(argv, action.option_strings, takes)
    file, line = parses.where(action)
    default = action.default if isinstance(action.default, (bool, int, float, str)) or action.default is None \
        else str(action.default)
    return dataclasses.replace(base, kind="argparse", flag=used or _long(action.option_strings), default=default,
                               argv=shown, file=file or base.file, line=line or base.line)


# --- what the Session records -------------------------------------------------------------
LOADER_SETTINGS = ("batch_size", "num_workers", "pin_memory", "persistent_workers")
OPTIMIZER_SETTINGS = ("lr", "fused", "foreach")
ACCELERATOR_SETTINGS = ("mixed_precision", "gradient_accumulation_steps")
TRAINING_ARGS_SETTINGS = ("per_device_train_batch_size", "gradient_accumulation_steps", "bf16", "fp16",
                          "dataloader_num_workers")


class _Site:
    """One call as recorded during the run (made a ``CallSite`` at the end)."""
    __slots__ = ("what", "cls", "stack", "settings", "dataset", "direct", "trained", "evaluated", "count")

    def __init__(self, what: str, cls: str, stack: list[list[Any]], settings: list[Setting], dataset: int = 0,
                 direct: bool = True) -> None:
        self.what, self.cls, self.stack, self.settings = what, cls, stack, settings
        self.dataset, self.direct = dataset, direct
        self.trained = self.evaluated = False
        self.count = 1


def _qualname(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _stack(users: list[types.FrameType]) -> list[list[Any]]:
    return [[f.f_code.co_filename, f.f_lineno, f.f_code.co_name] for f in users]


class SiteRecorder:
    """The sites of one run. ``script``: its path (files are reported relative to its folder)."""

    def __init__(self, script: str = "") -> None:
        self.script = _abspath(script) if script else ""
        self.parses = Parses()
        self.loaders: dict[tuple, _Site] = {}          # (stack, class) -> the site, counted per loader made
        self.loader_refs: dict[int, tuple[weakref.ref, _Site]] = {}     # id(loader) -> its site
        self.optimizers: dict[int, tuple[Any, _Site]] = {}
        self.modules: dict[int, tuple[weakref.ref, list[list[Any]]]] = {}
        self.forwards: Counter[tuple[int, str, int, str]] = Counter()
        self.forward_stacks: dict[tuple[int, str, int, str], list[list[Any]]] = {}
        self.forward_names: dict[tuple[int, str, int, str], str] = {}
        self.others: list[_Site] = []
        self.pending_loader: Any = None          # the loader of the last batch no backward has used yet

    # ---------------------------------------------------------------- recording (never raises)
    def _settings(self, obj: Any, users: list[types.FrameType], values: dict[str, Any], direct: bool,
                  names: Iterable[str] | None = None) -> list[Setting]:
        if not users:
            return [Setting(name=k, value=_scalar(v)) for k, v in values.items()]
        call = None
        if direct:
            mro = [c.__name__ for c in type(obj).__mro__] + list(names or ())
            call = call_at(users[0].f_code.co_filename, users[0].f_lineno, mro, values)
        positional = _positional(type(obj)) if call is not None else ()
        argv = list(sys.argv[1:])
        out = []
        for k, v in values.items():
            try:
                out.append(resolve(k, v, users, call, positional, self.parses, argv, self.script))
            except Exception:
                out.append(Setting(name=k, value=_scalar(v)))
        return out

    def _record(self, what: str, obj: Any, frame: types.FrameType | None, values: dict[str, Any],
                names: Iterable[str] | None = None, known: dict[tuple, _Site] | None = None) -> _Site | None:
        """The site of ``obj``'s construction; one already in ``known`` (the same call again, a
        loader made every epoch) is counted, its settings not resolved again."""
        frame = constructing_frame(obj, frame)
        users = user_frames(frame)
        if not users:
            return None
        stack = _stack(users)
        # a loader's dataset tells apart the train and eval loaders one library call makes (a Trainer)
        key = (tuple(map(tuple, stack)), _qualname(obj), id(getattr(obj, "dataset", None)) if what == "dataloader" else 0)
        if known is not None and key in known:
            known[key].count += 1
            return known[key]
        direct = frame is users[0]
        settings = self._settings(obj, users, values, direct, names)
        site = _Site(what, key[1], stack, settings, direct=direct)
        if known is not None:
            known[key] = site
        return site

    def on_loader(self, loader: Any, frame: types.FrameType | None) -> None:
        try:
            values = {k: getattr(loader, k, None) for k in LOADER_SETTINGS}
            site = self._record("dataloader", loader, frame, values, known=self.loaders)
            if site is None:
                return
            site.dataset = site.dataset or id(getattr(loader, "dataset", None))
            if len(self.loader_refs) > 256:
                self.loader_refs = {k: v for k, v in self.loader_refs.items() if v[0]() is not None}
            self.loader_refs[id(loader)] = (weakref.ref(loader), site)
        except Exception:
            pass

    def _loader_site(self, loader: Any) -> _Site | None:
        hit = self.loader_refs.get(id(loader))
        return hit[1] if hit is not None and hit[0]() is loader else None

    def on_batch(self, loader: Any, grad: bool) -> None:
        self.pending_loader = loader
        if not grad:
            site = self._loader_site(loader)
            if site is not None:
                site.evaluated = True

    def on_backward(self) -> None:
        loader, self.pending_loader = self.pending_loader, None
        if loader is not None:
            site = self._loader_site(loader)
            if site is not None:
                site.trained = True

    def on_optimizer(self, opt: Any, frame: types.FrameType | None) -> None:
        try:
            defaults = getattr(opt, "defaults", {}) or {}
            values = {k: defaults.get(k) for k in OPTIMIZER_SETTINGS if k in defaults}
            site = self._record("optimizer", opt, frame, values)
            if site is not None:
                self.optimizers[id(opt)] = (opt, site)
        except Exception:
            pass

    def on_module(self, module: Any, frame: types.FrameType | None) -> None:
        """A module constructed outside any other module's methods: a root candidate. Runs for
        every module the script builds, so frames are told apart by their code (cached), not by
        reading their locals."""
        try:
            codes = _init_codes(type(module))
            f = frame
            while f is not None and f.f_code in codes:
                f = f.f_back
            while f is not None and f.f_code.co_name in _INNER:
                f = f.f_back
            if f is None or _module_method(f):
                return
            users = user_frames(f)
            if users:
                self.modules[id(module)] = (weakref.ref(module), _stack(users))
        except Exception:
            pass

    def on_forward(self, module: Any, frame: types.FrameType | None, role: str) -> None:
        try:
            while frame is not None and not _is_user(frame):
                frame = frame.f_back
            if frame is None:
                return
            key = (id(module), frame.f_code.co_filename, frame.f_lineno, role)
            self.forwards[key] += 1
            if key not in self.forward_stacks:
                self.forward_stacks[key] = _stack(user_frames(frame))
                self.forward_names[key] = _called_as(module, frame)
        except Exception:
            pass

    def on_object(self, what: str, obj: Any, frame: types.FrameType | None, names: Iterable[str]) -> None:
        """``Accelerator`` / ``TrainingArguments``: their settings as the object holds them."""
        try:
            values = {k: _scalar(getattr(obj, k, None)) for k in names}
            site = self._record(what, obj, frame, values)
            if site is not None:
                self.others.append(site)
        except Exception:
            pass

    # ---------------------------------------------------------------- the profile's sites
    def build(self, roots: dict[str, Any], stepped: Iterable[Any], trained: bool) -> list[CallSite]:
        """The CallSites: ``roots`` the trained root modules (prefix -> module), ``stepped`` the
        optimizers that stepped, ``trained`` whether any training step ran."""
        out: list[CallSite] = []
        try:
            out += self._loader_sites()
            stepped_ids = {id(o) for o in stepped}
            for opt, site in self.optimizers.values():
                out.append(self._site(site, "train" if id(opt) in stepped_ids else ""))
            root_ids = {id(m): m for m in roots.values()}
            for key, (ref, stack) in self.modules.items():
                m = ref()
                if m is not None and key in root_ids:
                    out.append(self._callsite("model", _qualname(m), stack, "train", [], 1))
            for (mid, _file, _line, role), n in self.forwards.items():
                if mid in root_ids:
                    m = root_ids[mid]
                    key = (mid, _file, _line, role)
                    out.append(self._callsite("forward", _qualname(m), self.forward_stacks[key], role, [], n,
                                              name=self.forward_names.get(key, "")))
            for site in self.others:
                out.append(self._site(site, "train" if trained else ""))
        except Exception:
            pass
        return out

    def _loader_sites(self) -> list[CallSite]:
        sites = list(self.loaders.values())
        # a loader a library made from the user's (accelerate's prepare(), a Trainer): the user's
        # loader over the same dataset is the one to change
        for s in sites:
            if s.trained and not s.direct:
                mine = [u for u in sites if u.direct and u.dataset == s.dataset and u is not s]
                if mine:
                    s.trained = False
                    mine[0].trained = True
        return [self._site(s, "train" if s.trained else "eval" if s.evaluated else "") for s in sites]

    def _site(self, site: _Site, role: str) -> CallSite:
        # made inside a library (a Trainer's loader, accelerate's): the user's statement did not name it
        return self._callsite(site.what, site.cls, site.stack, role, site.settings, site.count,
                              name=None if site.direct else "")

    def _callsite(self, what: str, cls: str, stack: list[list[Any]], role: str, settings: list[Setting],
                  count: int, name: str | None = None) -> CallSite:
        file, line, function = stack[0]
        rel = [[self.rel(f), n, fn] for f, n, fn in stack]
        settings = [dataclasses.replace(s, file=self.rel(s.file), scope_file=self.rel(s.scope_file))
                    for s in settings]
        return CallSite(what=what, cls=cls, file=self.rel(file), line=line, function=function, stack=rel,
                        role=role, name=assigned_name(file, line) if name is None else name, settings=settings,
                        count=count)

    def rel(self, path: str) -> str:
        """``path`` relative to the script's folder when inside it (else the current folder's)."""
        if not path:
            return path
        folder = os.path.dirname(self.script) if self.script else os.getcwd()
        try:
            full = _abspath(path)
            if full.startswith(folder.rstrip(os.sep) + os.sep):
                return os.path.relpath(full, folder)
        except Exception:
            pass
        return path


def _called_as(module: Any, frame: types.FrameType) -> str:
    """How ``frame``'s line calls ``module`` (``"model"``, ``"self.net"``): the function of a call
    at that line whose path is the module itself; ``""`` when none is."""
    for call in _calls(frame.f_code.co_filename):
        if call.lineno <= frame.f_lineno <= (call.end_lineno or call.lineno):
            path = _path_of(call.func)
            if path is not None:
                ok, v, _ = eval_path(path, frame)
                if ok and v is module:
                    return path_text(path)
    return ""


_INIT_CODES: dict[type, frozenset[types.CodeType]] = {}
_MODULE_METHOD: dict[types.CodeType, bool] = {}


def _init_codes(cls: type) -> frozenset[types.CodeType]:
    """The code of each ``__init__`` along ``cls``'s MRO: the frames of one constructor call."""
    hit = _INIT_CODES.get(cls)
    if hit is None:
        codes = set()
        for c in cls.__mro__:
            fn = c.__dict__.get("__init__")
            for f in (fn, inspect.unwrap(fn) if fn is not None else None):
                code = getattr(f, "__code__", None)
                if code is not None:
                    codes.add(code)
        hit = _INIT_CODES[cls] = frozenset(codes)
    return hit


def _module_method(frame: types.FrameType) -> bool:
    """Whether ``frame`` runs a method of a module (its first argument is an ``nn.Module``):
    what it builds is a submodule. Read once per code object."""
    code = frame.f_code
    hit = _MODULE_METHOD.get(code)
    if hit is None:
        hit = _MODULE_METHOD[code] = _is_module(_self_of(frame))
    return hit


def _is_module(obj: Any) -> bool:
    import torch.nn as nn  # here: torch is loaded when a module is built

    return isinstance(obj, nn.Module)


@lru_cache(maxsize=256)
def assigned_name(path: str, line: int) -> str:
    """The target of ``x = Call(...)`` (``"model"``, ``"self.model"``) whose call spans ``line``;
    ``""`` for anything else (a tuple target, a return, an argument)."""
    tree = _tree(path)
    if tree is None:
        return ""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None \
                and isinstance(node.value, ast.Call) \
                and node.value.lineno <= line <= (node.value.end_lineno or node.value.lineno):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) == 1 and isinstance(targets[0], (ast.Name, ast.Attribute)):
                if best is None or node.lineno > best[0]:
                    best = (node.lineno, ast.unparse(targets[0]))
    return best[1] if best else ""
