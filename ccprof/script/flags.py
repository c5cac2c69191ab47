"""Is a block of the script behind a flag, and did a given run set it?

A script often holds a tweak it only uses on request: ``if args.compile: model =
torch.compile(model)``, ``torch.autocast(..., enabled=args.amp)``, nanoGPT's ``if compile:`` with
``compile`` a config global that ``--compile=False`` overrides. Whether the tweak is in effect
depends on the run's command line. This module reads

- the script's options: ``add_argument`` calls (rebuilt as a real ``argparse`` parser from their
  literal keywords, so prefixes, ``store_true`` and ``type=int`` behave as in the script) and
  nanoGPT-style config globals (module-level names assigned before ``exec(open(...).read())``,
  overridden by ``--name=value``);
- the guards of a node: the enclosing ``if`` / ``x if c else y`` conditions that read an option
  or a config value (``args.compile``, ``config.dtype == "bfloat16"``, ``compile``);

and evaluates a guard against one run's argv: True (the block ran), False (the flag was off),
None (not known: no run given, or a value ccprof cannot compute). Conditions that read no option
(``if torch.cuda.is_available():``, ``if __name__ == "__main__":``) are not guards.

A setting whose value reads the device (``fused=use_fused`` with ``use_fused = fused_available and
device_type == "cuda"``, ``fused=torch.cuda.is_available()``) is a *device* guard: it is evaluated
for the device the run targets (``Options.device``: ``"cuda"``, ccprof's target is a GPU), not the
profiling host's. Names the script binds once (``use_fused = ...``) are read through their value;
``torch.cuda.is_available()`` is True on CUDA, a ``device``/``device_type`` ccprof cannot resolve is
the target device, ``inspect.signature(torch.optim.AdamW).parameters`` the installed torch's.

Example::

    opts = script_options(info, ["--epochs", "3"])          # the run's argv after the script
    guards = guards_of(info, compile_call, opts)             # (Guard(code="args.compile", ...),)
    runs(guards, opts)                                       # False: --compile was not given
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import libcst as cst

from ccprof.script.info import ScriptInfo
from ccprof.script.nodes import attr_chain, code_of, kwarg

__all__ = ["UNKNOWN", "Guard", "Options", "script_options", "guards_of", "value_guard", "keyword_guard", "runs", "switch_on",
           "describe", "TARGET_DEVICE"]


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()           # a value ccprof cannot compute without running the script

TARGET_DEVICE = "cuda"     # the device a projected run takes its branches for: a CUDA GPU
# identifiers that hold a device (``device``, ``device_type``, ``args.device``, ``x.device.type``)
DEVICE_NAMES = frozenset({"device", "device_type", "dev", "device_name"})

# receivers whose attributes are configuration values (``args.x``, ``config.dtype``, ``self.hparams.lr``)
CONFIG_NAMES = frozenset({"args", "opts", "config", "cfg", "conf", "hparams", "hp", "flags", "FLAGS",
                          "options", "train_config", "training_args"})


@dataclass(frozen=True)
class Options:
    """The script's options and, for one run, their values.

    dests: argparse destination -> its first long flag (``"compile" -> "--compile"``);
    config: nanoGPT-style config globals -> their flag (``"compile" -> "--compile"``);
    namespaces: names bound to ``parser.parse_args()``;
    values: name -> the value in the run (UNKNOWN where not computable); None when no run is known;
    device: the device the run targets (``"cuda"``; None: not known), for device conditions;
    bindings: names the script assigns exactly once -> the assigned expression.
    """
    dests: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    namespaces: frozenset[str] = frozenset()
    values: dict[str, Any] | None = None
    argv: tuple[str, ...] | None = None      # the run's arguments the values come from
    device: str | None = None
    bindings: dict[str, cst.BaseExpression] = field(default_factory=dict, compare=False, repr=False)

    def value(self, name: str) -> Any:
        if self.values is None:
            return UNKNOWN
        return self.values.get(name, UNKNOWN)


@dataclass(frozen=True)
class Guard:
    """A condition a node runs under that reads the script's options.

    code: the condition's source (``args.compile``); line: where it is; when: the node runs when
    the condition is truthy (False: it sits in the ``else`` branch); flags: what sets it
    (``("--compile",)``); check: applied to the condition's value (truthiness, or ``> 1``).
    """
    code: str
    line: int
    when: bool
    flags: tuple[str, ...]
    node: cst.BaseExpression = field(compare=False, repr=False)
    check: Callable[[Any], bool] = field(default=bool, compare=False, repr=False)
    keyword: str = ""           # a setting's keyword (``enabled``) rather than an ``if``
    device: bool = False        # the condition reads the device (True on CUDA, False on a CPU)
    # values an option could take to turn the setting on, besides those the condition compares with
    # (``Accelerator(mixed_precision=args.mixed_precision)``: "bf16", "fp16")
    values: tuple[Any, ...] = ()

    def holds(self, options: Options) -> bool | None:
        """Whether the node runs in the run ``options`` describe; None when not known."""
        value = _value(self.node, options)
        if value is UNKNOWN:
            return None
        try:
            return bool(self.check(value)) == self.when
        except Exception:
            return None

    def describe(self) -> str:
        where = (f"`{self.keyword}={self.code}` (line {self.line})" if self.keyword
                 else f"`if {'not ' if not self.when else ''}{self.code}:` (line {self.line})")
        if self.device:
            where += ", which reads the device"
        return f"{where}, set by {', '.join(self.flags)}" if self.flags else where


def runs(guards: Iterable[Guard], options: Options) -> bool | None:
    """False when a guard's flag was off in the run; True when every guard held; None otherwise."""
    states = [g.holds(options) for g in guards]
    if any(s is False for s in states):
        return False
    return True if all(s is True for s in states) else None


def describe(guards: Sequence[Guard]) -> str:
    """``behind `if args.compile:` (line 200), set by --compile``."""
    return "behind " + " and ".join(g.describe() for g in guards)


# --------------------------------------------------------------------------- options


def script_options(info: ScriptInfo, argv: Sequence[str] | None = None,
                   device: str | None = TARGET_DEVICE) -> Options:
    """The script's argparse options and config globals, with their values in a run of
    ``argv`` (the arguments after the script's name); ``argv=None``: no run known. ``device``:
    the device whose branch device conditions take (the target GPU's ``"cuda"``; None: unknown)."""
    dests, parser, unknown_dests = _parser(info)
    config, defaults = _config_globals(info)
    namespaces = frozenset(_namespaces(info))
    values: dict[str, Any] | None = None
    if argv is not None:
        values = {}
        if dests:
            parsed = _parse(parser, list(argv))
            for dest in dests:
                values[dest] = UNKNOWN if parsed is None or dest in unknown_dests else parsed.get(dest, UNKNOWN)
        if config:
            values.update(_config_values(config, defaults, list(argv)))
    return Options(dests=dests, config=config, namespaces=namespaces, values=values,
                   argv=None if argv is None else tuple(argv), device=device, bindings=_bindings(info))


def _bindings(info: ScriptInfo) -> dict[str, cst.BaseExpression]:
    """Names the script binds exactly once, by a plain ``name = value`` (any scope), -> the value.
    A name bound twice, augmented, or bound by a loop, ``with`` or import is left out."""
    count: dict[str, int] = {}
    value: dict[str, cst.BaseExpression] = {}
    for node in info.assigns():
        for t in node.targets:
            for name in _target_names(t.target):
                count[name] = count.get(name, 0) + 1
                if isinstance(t.target, cst.Name) and len(node.targets) == 1:
                    value[name] = node.value
    for node in info.facts.of_type(cst.AnnAssign):
        for name in _target_names(node.target):
            count[name] = count.get(name, 0) + 1
            if node.value is not None:
                value[name] = node.value
    for node in [*info.facts.of_type(cst.AugAssign), *info.facts.of_type(cst.For), *info.facts.of_type(cst.AsName),
                 *info.facts.of_type(cst.Param), *info.facts.of_type(cst.NamedExpr)]:
        target = node.name if isinstance(node, (cst.Param, cst.AsName)) else node.target
        for name in _target_names(target):
            count[name] = count.get(name, 0) + 2
    return {k: v for k, v in value.items() if count.get(k) == 1}


def _target_names(target: cst.CSTNode) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _target_names(e.value)]
    return []


def _literal(node: cst.BaseExpression) -> Any:
    try:
        return ast.literal_eval(code_of(node).strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return UNKNOWN


def _str2bool(text: str) -> bool:
    return str(text).strip().lower() in ("1", "true", "t", "yes", "y", "on")


_ACTIONS = ("store", "store_true", "store_false", "store_const", "append", "append_const", "count", "extend")
_TYPES: dict[str, Callable] = {"int": int, "float": float, "str": str, "bool": bool}


def _parser(info: ScriptInfo) -> tuple[dict[str, str], argparse.ArgumentParser, set[str]]:
    """An ArgumentParser rebuilt from the script's literal ``add_argument`` calls: (dest -> flag,
    parser, dests whose value ccprof cannot compute: a custom type or action)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=True, exit_on_error=False)
    dests: dict[str, str] = {}
    unknown: set[str] = set()
    for call in info.method_calls("add_argument"):
        names = [a.value.evaluated_value for a in call.args
                 if a.keyword is None and isinstance(a.value, cst.SimpleString)]
        if not names or not all(isinstance(n, str) for n in names):
            continue
        positional = not names[0].startswith("-")
        kwargs: dict[str, Any] = {}
        opaque = False
        for arg in call.args:
            if arg.keyword is None:
                continue
            key = arg.keyword.value
            if key in ("default", "const", "dest", "nargs"):
                value = _literal(arg.value)
                if value is UNKNOWN and key != "default":
                    opaque = True
                    continue
                kwargs[key] = value
            elif key == "action":
                value = _literal(arg.value)
                if value in _ACTIONS:
                    kwargs[key] = value
                elif (attr_chain(arg.value) or "").endswith("BooleanOptionalAction"):
                    kwargs[key] = argparse.BooleanOptionalAction
                else:
                    opaque = True
            elif key == "type":
                name = attr_chain(arg.value) or ""
                if name in _TYPES:
                    kwargs[key] = _TYPES[name]
                elif "bool" in name.lower():
                    kwargs[key] = _str2bool
                else:
                    opaque = True
        if positional:
            kwargs["nargs"] = "*" if kwargs.get("nargs") in ("*", "+") else "?"
        try:
            action = parser.add_argument(*names, **kwargs)
        except Exception:           # a conflict or an argument argparse refuses: not readable
            continue
        long = next((n for n in names if n.startswith("--")), names[0])
        dests.setdefault(action.dest, long)
        if opaque:
            unknown.add(action.dest)
    return dests, parser, unknown


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any] | None:
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ns, _rest = parser.parse_known_args(argv)
    except (SystemExit, Exception):
        return None
    return vars(ns)


def _namespaces(info: ScriptInfo) -> set[str]:
    """Names bound to ``parser.parse_args()`` / ``parse_known_args()``."""
    out: set[str] = set()
    for meth in ("parse_args", "parse_known_args"):
        for call in info.method_calls(meth):
            stmt = info.stmt_of(call)
            if isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Assign):
                target = stmt.body[0].targets[0].target
                if isinstance(target, cst.Name):
                    out.add(target.value)
                elif isinstance(target, cst.Tuple) and target.elements and isinstance(target.elements[0].value, cst.Name):
                    out.add(target.elements[0].value.value)
    return out


def _config_globals(info: ScriptInfo) -> tuple[dict[str, str], dict[str, Any]]:
    """nanoGPT's "poor man's configurator": module-level names assigned before a module-level
    ``exec(open(...).read())`` that command-line ``--name=value`` overrides."""
    body = list(info.module.body)
    at = next((i for i, stmt in enumerate(body) if _is_exec_config(stmt)), None)
    if at is None:
        return {}, {}
    config: dict[str, str] = {}
    defaults: dict[str, Any] = {}
    for stmt in body[:at]:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
                name = small.targets[0].target.value
                config[name] = f"--{name}"
                defaults[name] = _literal(small.value)
    return config, defaults


def _is_exec_config(stmt: cst.CSTNode) -> bool:
    if not (isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Expr)):
        return False
    call = stmt.body[0].value
    return (isinstance(call, cst.Call) and isinstance(call.func, cst.Name) and call.func.value == "exec"
            and "open(" in code_of(call))


def _config_values(config: dict[str, str], defaults: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    values = dict(defaults)
    for arg in argv:
        if "=" not in arg:                  # a config file: it may set anything
            return {name: UNKNOWN for name in config}
        key, _, text = arg.partition("=")
        key = key.lstrip("-")
        if key in config:
            try:
                values[key] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[key] = text
    return values


# --------------------------------------------------------------------------- guards


def _reads_option(expr: cst.CSTNode, options: Options) -> tuple[str, ...]:
    """The flags (or config reads) ``expr`` depends on; () when it reads none."""
    found: list[str] = []

    class _V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            if n.value in options.config:
                found.append(options.config[n.value])

        def visit_Attribute(self, n: cst.Attribute) -> bool:
            flag = _attr_flag(n, options)
            if flag is not None:
                found.append(flag)
                return False
            return True

        def visit_Call(self, n: cst.Call) -> bool:
            return not isinstance(n.func, cst.Name) or n.func.value in ("bool", "int", "str", "float", "getattr")

    expr.visit(_V())
    return tuple(dict.fromkeys(found))


def _attr_flag(node: cst.Attribute, options: Options) -> str | None:
    chain = attr_chain(node)
    if chain is None:
        return None
    parts = chain.split(".")
    receiver, name = parts[-2], parts[-1]
    if receiver in options.namespaces or receiver in CONFIG_NAMES:
        return options.dests.get(name, chain)
    return None


def guards_of(info: ScriptInfo, node: cst.CSTNode, options: Options) -> tuple[Guard, ...]:
    """The conditions around ``node`` that read an option, outermost first."""
    out: list[Guard] = []
    child: cst.CSTNode = node
    for parent in info.ancestors(node):
        test, when = None, True
        if isinstance(parent, cst.If) and child is not parent.test:
            test, when = parent.test, child is parent.body
        elif isinstance(parent, cst.IfExp) and child is not parent.test:
            test, when = parent.test, child is parent.body
        if test is not None:
            flags = _reads_option(test, options)
            if flags:
                out.append(Guard(code_of(test).strip(), info.line(parent), when, flags, test))
        child = parent
    return tuple(reversed(out))


def value_guard(info: ScriptInfo, value: cst.BaseExpression, options: Options,
                check: Callable[[Any], bool] = bool, keyword: str = "", values: tuple[Any, ...] = ()) -> Guard | None:
    """A guard for a setting whose value comes from an option (``enabled=args.amp``,
    ``num_workers=args.workers``): the setting is on when ``check(value)``. None when the value
    reads no option, or is a literal that passes; a literal that fails is a guard that never
    holds (``enabled=False``)."""
    flags = _reads_option(value, options)
    device = not flags and reads_device(value, options)
    if not flags and not device:
        literal = _literal(value)
        if literal is UNKNOWN or check(literal):
            return None
    return Guard(code_of(value).strip(), info.line(value), True, flags, value, check, keyword, device, values)


def keyword_guard(info: ScriptInfo, call: cst.Call, key: str, options: Options,
                  check: Callable[[Any], bool] = bool) -> Guard | None:
    """``value_guard`` of the keyword ``key`` of ``call`` (None when the call does not pass it)."""
    arg = kwarg(call, key)
    return None if arg is None else value_guard(info, arg.value, options, check, key)


# --------------------------------------------------------------------------- evaluation


def reads_device(expr: cst.BaseExpression, options: Options) -> bool:
    """Whether ``expr`` takes one value on CUDA and another on a CPU (both known)."""
    on_cuda, on_cpu = (_value(expr, replace(options, device=d)) for d in ("cuda", "cpu"))
    if on_cuda is UNKNOWN or on_cpu is UNKNOWN:
        return False
    try:
        return bool(on_cuda != on_cpu)
    except Exception:
        return False


def _device_named(node: cst.CSTNode) -> bool:
    """``device``, ``device_type``, ``args.device``, ``x.device.type``: a name that holds a device."""
    chain = attr_chain(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
    if not chain:
        return False
    parts = chain.split(".")
    return parts[-1] in DEVICE_NAMES or (parts[-1] == "type" and len(parts) > 1 and parts[-2] in DEVICE_NAMES)


def _device_call(node: cst.Call, options: Options, seen: frozenset[str]) -> Any:
    """``torch.cuda.is_available()``, ``torch.device(x)``, ``inspect.signature(X).parameters``."""
    chain = attr_chain(node.func) or ""
    if chain.endswith("cuda.is_available"):
        return UNKNOWN if options.device is None else options.device == "cuda"
    if chain in ("torch.device", "device") and node.args and node.args[0].keyword is None:
        return _value(node.args[0].value, options, seen)
    return UNKNOWN


def _signature_parameters(node: cst.Attribute) -> Any:
    """``inspect.signature(torch.optim.AdamW).parameters``: the installed torch's parameter names
    (a feature test such as nanoGPT's ``'fused' in inspect.signature(...).parameters``)."""
    call = node.value
    if not (isinstance(call, cst.Call) and (attr_chain(call.func) or "").endswith("signature") and call.args):
        return UNKNOWN
    target = attr_chain(call.args[0].value) or ""
    if not target.startswith("torch."):
        return UNKNOWN
    import importlib
    import inspect
    module, _, name = target.rpartition(".")
    try:
        return tuple(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    except Exception:
        return UNKNOWN


def _value(node: cst.CSTNode, options: Options, seen: frozenset[str] = frozenset()) -> Any:
    """The value of a condition in the run, or UNKNOWN (three-valued ``and``/``or``/``not``)."""
    if isinstance(node, cst.Name):
        if node.value in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.value]
        if node.value in options.config:
            return options.value(node.value)
        if node.value in options.bindings and node.value not in seen:
            got = _value(options.bindings[node.value], options, seen | {node.value})
            if got is not UNKNOWN:
                return got
        if _device_named(node) and options.device is not None:
            return options.device
        return UNKNOWN
    if isinstance(node, cst.Attribute):
        if _attr_flag(node, options) is not None and node.attr.value in options.dests:
            return options.value(node.attr.value)
        if node.attr.value == "parameters":
            return _signature_parameters(node)
        if node.attr.value == "type" and _device_named(node.value):
            inner = _value(node.value, options, seen)               # torch.device("cuda:0").type
            if isinstance(inner, str):
                return inner.split(":")[0]
        if _device_named(node) and options.device is not None:
            return options.device
        return UNKNOWN
    if isinstance(node, cst.Call):
        got = _device_call(node, options, seen)
        if got is not UNKNOWN:
            return got
    if isinstance(node, cst.IfExp):
        test = _value(node.test, options, seen)
        if test is UNKNOWN:
            return UNKNOWN
        return _value(node.body if test else node.orelse, options, seen)
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString, cst.Integer, cst.Float)):
        return _literal(node)
    if isinstance(node, (cst.Tuple, cst.List, cst.Set)):
        items = [_value(e.value, options, seen) for e in node.elements]
        return UNKNOWN if any(v is UNKNOWN for v in items) else tuple(items)
    if isinstance(node, cst.UnaryOperation):
        v = _value(node.expression, options, seen)
        if v is UNKNOWN:
            return UNKNOWN
        if isinstance(node.operator, cst.Not):
            return not v
        return -v if isinstance(node.operator, cst.Minus) else UNKNOWN
    if isinstance(node, cst.BooleanOperation):
        left, right = _value(node.left, options, seen), _value(node.right, options, seen)
        is_and = isinstance(node.operator, cst.And)
        if left is not UNKNOWN:
            return (right if left else left) if is_and else (left if left else right)
        if right is not UNKNOWN and (not right if is_and else right):
            return right                # `? and False` is falsy, `? or True` truthy
        return UNKNOWN
    if isinstance(node, cst.Comparison):
        return _compare(node, options, seen)
    if (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "startswith"
            and len(node.args) == 1):          # nanoGPT's `init_from.startswith('gpt2')`
        v, prefix = _value(node.func.value, options, seen), _value(node.args[0].value, options, seen)
        return v.startswith(prefix) if isinstance(v, str) and isinstance(prefix, (str, tuple)) else UNKNOWN
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "bool" and node.args:
        v = _value(node.args[0].value, options, seen)
        return UNKNOWN if v is UNKNOWN else bool(v)
    return UNKNOWN


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    cst.Equal: lambda a, b: a == b, cst.NotEqual: lambda a, b: a != b,
    cst.LessThan: lambda a, b: a < b, cst.LessThanEqual: lambda a, b: a <= b,
    cst.GreaterThan: lambda a, b: a > b, cst.GreaterThanEqual: lambda a, b: a >= b,
    cst.In: lambda a, b: a in b, cst.NotIn: lambda a, b: a not in b,
    cst.Is: lambda a, b: a is b, cst.IsNot: lambda a, b: a is not b,
}


def _compare(node: cst.Comparison, options: Options, seen: frozenset[str] = frozenset()) -> Any:
    left = _value(node.left, options, seen)
    for target in node.comparisons:
        right = _value(target.comparator, options, seen)
        op = _COMPARE.get(type(target.operator))
        if left is UNKNOWN or right is UNKNOWN or op is None:
            return UNKNOWN
        try:
            if not op(left, right):
                return False
        except Exception:
            return UNKNOWN
        left = right
    return True


# --------------------------------------------------------------------------- turning a flag on


def _literals_in(node: cst.CSTNode) -> list[Any]:
    """The literal values a condition compares with (``args.dtype == "bfloat16"`` -> ["bfloat16"])."""
    out: list[Any] = []

    class _V(cst.CSTVisitor):
        def visit_SimpleString(self, n: cst.SimpleString) -> None:
            out.append(n.evaluated_value)

        def visit_Integer(self, n: cst.Integer) -> None:
            out.append(n.evaluated_value)

        def visit_Float(self, n: cst.Float) -> None:
            out.append(n.evaluated_value)

    node.visit(_V())
    return list(dict.fromkeys(v for v in out if isinstance(v, (str, int, float))))


def _without(argv: list[str], flag: str, takes_value: bool) -> list[str]:
    """``argv`` with every setting of ``flag`` dropped (``--flag``, ``--flag=x``, ``--flag x``)."""
    out: list[str] = []
    skip = False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a.startswith(flag + "="):
            continue
        if a == flag:
            skip = takes_value and i + 1 < len(argv) and not argv[i + 1].startswith("-")
            continue
        out.append(a)
    return out


def with_option(argv: Sequence[str], flag: str, value: str | None) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (``None``: a bare switch), in the form the run wrote
    it: ``--bs 4`` -> ``--bs 32``, ``--batch_size=4`` -> ``--batch_size=32``; appended as
    ``--flag=value`` when the run did not set it.

    Example: ``with_option(["--batch_size=4", "--compile=False"], "--batch_size", "32")`` ->
    ``["--batch_size=32", "--compile=False"]``.
    """
    out = list(argv)
    for i, a in enumerate(out):
        if a.startswith(flag + "="):
            out[i] = flag if value is None else f"{flag}={value}"
            return out
        if a == flag:
            if value is None:
                return out
            if i + 1 < len(out) and not out[i + 1].startswith("-"):
                out[i + 1] = value
            else:
                out.insert(i + 1, value)
            return out
    return out + [flag if value is None else f"{flag}={value}"]


def switch_on(info: ScriptInfo, guards: Sequence[Guard], argv: Sequence[str] | None) -> list[str] | None:
    """The run's arguments changed so that every guard in ``guards`` holds, or None when ccprof
    cannot find such a command line. Each candidate is checked by evaluating the guards again
    on it, as the script's own parser would read it: ``--compile``, ``--compile=True`` (a config
    global), ``--dtype bfloat16`` (a value the condition compares with).

    Example: guards of ``if args.compile: model = torch.compile(model)`` and argv
    ``["--epochs", "3"]`` -> ``["--epochs", "3", "--compile"]``.
    """
    if argv is None:
        return None
    current = list(argv)
    for guard in guards:
        options = script_options(info, current)
        if guard.holds(options) is True:
            continue
        found = None
        for flag in guard.flags:
            values = list(dict.fromkeys([*_literals_in(guard.node), *guard.values]))
            candidates: list[tuple[list[str], bool]] = [([flag], False), ([f"{flag}=True"], True)]
            candidates += [([flag, str(v)], True) for v in values] + [([f"{flag}={v}"], True) for v in values]
            candidates += [([flag, "1"], True), ([flag, "true"], True)]
            for extra, takes_value in candidates:
                trial = _without(current, flag, takes_value) + extra
                try:
                    ok = guard.holds(script_options(info, trial)) is True
                except Exception:
                    ok = False
                if ok:
                    found = trial
                    break
            if found is not None:
                break
        if found is None:
            return None
        current = found
    final = script_options(info, current)
    return current if all(g.holds(final) is True for g in guards) else None
