"""Dataclass <-> JSON-able dict, for the frozen artefacts (Profile, Advice).

A field may carry ``metadata={"json": "class"}`` to use another key in JSON (``class`` is a
Python keyword). Nested dataclasses, ``list[...]``, ``dict[str, ...]`` and ``X | None`` are
rebuilt from their type hints; anything else (``Any``) is taken as it is.

Loading validates against those hints and raises ``ArtefactError`` (a ``ValueError``) naming
the field by its JSON path, e.g. ``steps.step_s[2]: expected a number, got "abc"``:

- ``int`` and ``float`` take a JSON number (either; never ``true``/``false``, ``NaN`` or
  ``Infinity``). A ``float`` also takes ``null``: ``to_dict`` writes a non-finite float so.
- ``str`` takes a string, ``bool`` true/false, ``list[...]`` an array, ``dict[str, ...]`` and a
  nested dataclass an object; ``X | None`` (or a field whose default is ``None``) takes null.
- A field without a default must be there; unknown keys are ignored.
- A dataclass may name ``_json_min = {"field": 0}``: the least value of that number (or of
  each number of that list).
- Nothing nests deeper than ``MAX_DEPTH``, and ``schema`` is the version this ccprof writes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ArtefactError", "MAX_DEPTH", "to_dict", "from_dict", "dump_json", "load_json", "check_schema"]

T = TypeVar("T")

MAX_DEPTH = 200                             # levels of JSON nesting a saved artefact may have

_HINTS: dict[type, dict[str, Any]] = {}


class ArtefactError(ValueError):
    """A saved artefact that does not match its schema; ``field`` is the JSON path of the problem
    ("steps.step_s[2]", "" for the document itself) and the message starts with it."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _json_name(f: dataclasses.Field) -> str:
    return f.metadata.get("json", f.name)


def to_dict(obj: Any) -> Any:
    """A dataclass (or list/dict of them) as plain JSON-able data; NaN and inf become None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {_json_name(f): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---- validation ------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _key(path: str, key: str) -> str:
    if _NAME.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _got(data: Any) -> str:
    """``data`` as the user would see it in the file."""
    if isinstance(data, dict):
        return "an object"
    if isinstance(data, (list, tuple)):
        return "a list"
    if isinstance(data, (str, int, float)) or data is None:   # bool is an int
        text = json.dumps(data)
        return text if len(text) <= 40 else text[:37] + "..."
    return type(data).__name__


def _is_number(data: Any) -> bool:
    return isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data)


def _expected(tp: Any) -> str:
    if tp in (int, float):
        return "a number"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    origin = typing.get_origin(tp) or tp
    if origin in (list, tuple):
        return "a list"
    return "an object"                      # dict, dataclass


def _build(tp: Any, data: Any, path: str = "") -> Any:
    """``data`` (parsed JSON) as type ``tp``; ArtefactError at ``path`` if it is not one."""
    if tp is Any or isinstance(tp, typing.TypeVar):
        return data
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in typing.get_args(tp):
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _build(args[0], data, path)
        first: ArtefactError | None = None
        for a in args:
            try:
                return _build(a, data, path)
            except ArtefactError as exc:
                first = first or exc
        raise first or ArtefactError(path, f"unexpected {_got(data)}")
    if data is None:
        if tp is float:                     # a NaN or inf written by to_dict
            return None
        raise ArtefactError(path, f"expected {_expected(tp)}, got null")
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ArtefactError(path, f"expected an object, got {_got(data)}")
        return from_dict(tp, data, path)
    if tp in (int, float):
        if not _is_number(data):
            raise ArtefactError(path, f"expected a number, got {_got(data)}")
        return data
    if tp is bool:
        if not isinstance(data, bool):
            raise ArtefactError(path, f"expected true or false, got {_got(data)}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise ArtefactError(path, f"expected a string, got {_got(data)}")
        return data
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(data, (list, tuple)):
            raise ArtefactError(path, f"expected a list, got {_got(data)}")
        (arg, *_) = typing.get_args(tp) or (Any,)
        return [_build(arg, v, f"{path}[{i}]") for i, v in enumerate(data)]
    if origin is dict or tp is dict:
        if not isinstance(data, dict):
            raise ArtefactError(path, f"expected an object, got {_got(data)}")
        args = typing.get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        out = {}
        for k, v in data.items():
            if not isinstance(k, str):
                raise ArtefactError(path, f"expected string keys, got {_got(k)}")
            out[k] = _build(val_tp, v, _key(path, k))
        return out
    return data


def _check_min(value: Any, least: float, path: str) -> None:
    items = enumerate(value) if isinstance(value, list) else ((None, value),)
    for i, v in items:
        if _is_number(v) and v < least:
            raise ArtefactError(path if i is None else f"{path}[{i}]", f"must be at least {least:g}, got {_got(v)}")


def from_dict(cls: type[T], data: dict, path: str = "") -> T:
    """Rebuild dataclass ``cls`` from ``to_dict`` output; unknown keys are ignored.

    ArtefactError (naming the field, under ``path``) when ``data`` does not fit ``cls``.
    """
    if not isinstance(data, dict):
        raise ArtefactError(path or "top level", f"expected an object, got {_got(data)}")
    hints = _hints(cls)
    least = getattr(cls, "_json_min", {})
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = _json_name(f)
        where = _key(path, key)
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ArtefactError(where, "required but missing")
            continue
        value = data[key]
        if value is None and f.default is None:
            kwargs[f.name] = None
            continue
        kwargs[f.name] = _build(hints[f.name], value, where)
        if f.name in least:
            _check_min(kwargs[f.name], least[f.name], where)
    return cls(**kwargs)


def _check_depth(data: Any, limit: int = MAX_DEPTH) -> None:
    """ArtefactError when ``data`` nests deeper than ``limit`` (without recursing itself)."""
    stack = [(data, 1, "")]
    while stack:
        obj, depth, top = stack.pop()
        if isinstance(obj, dict):
            children = obj.items()
        elif isinstance(obj, (list, tuple)):
            children = enumerate(obj)
        else:
            continue
        if depth > limit:
            raise ArtefactError(top, f"JSON nested too deeply (over {limit} levels)")
        for k, v in children:
            if isinstance(v, (dict, list, tuple)):
                stack.append((v, depth + 1, top or (k if isinstance(k, str) else f"[{k}]")))


# ---- files -----------------------------------------------------------------------------------

def dump_json(obj: Any, path: str | Path | None = None, indent: int = 2) -> str:
    """Serialize a dataclass to JSON text; write it to ``path`` when given."""
    text = json.dumps(to_dict(obj), indent=indent, allow_nan=False)
    if path is not None:
        Path(path).write_text(text + "\n", encoding="utf-8")
    return text


def load_json(cls: type[T], path_or_text: str | Path, schema_prefix: str, what: str) -> T:
    """Rebuild a versioned artefact from a path or JSON text; ArtefactError if not one.

    A ``str`` that starts with ``{`` or ``[`` is JSON text, anything else a path.
    ``schema_prefix`` ("ccprof.profile/") is checked against the ``schema`` field, and
    ``what`` ("profile") names the artefact in the error. A file that is not JSON at all
    raises json.JSONDecodeError (a ValueError too).
    """
    text = str(path_or_text)
    if isinstance(path_or_text, Path) or text.lstrip()[:1] not in ("{", "["):
        text = Path(path_or_text).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except RecursionError:
        raise ArtefactError("", "JSON nested too deeply") from None
    return check_schema(cls, data, schema_prefix, what)


def check_schema(cls: type[T], data: dict, schema_prefix: str, what: str) -> T:
    """``cls`` from parsed JSON, after checking ``schema`` is the version ``cls`` writes (the
    default of its ``schema`` field) and that ``data`` fits it; ArtefactError if not."""
    if not isinstance(data, dict):
        raise ArtefactError("top level", f"expected an object, got {_got(data)}")
    current = next((f.default for f in dataclasses.fields(cls) if f.name == "schema"), None)
    want = current if isinstance(current, str) else f"{schema_prefix}1"
    if "schema" not in data:
        raise ArtefactError("schema", f"missing (a ccprof {what} has \"schema\": \"{want}\")")
    schema = data["schema"]
    if not isinstance(schema, str) or not schema.startswith(schema_prefix):
        raise ArtefactError("schema", f"{_got(schema)} is not a ccprof {what} ({want})")
    if schema != want:
        raise ArtefactError("schema", f"{_got(schema)} is not a version this ccprof reads ({want})")
    try:
        _check_depth(data)
        return from_dict(cls, data)
    except RecursionError:
        raise ArtefactError("", "JSON nested too deeply") from None
