"""Dataclass <-> JSON-able dict, for the frozen artefacts (Profile, Advice).

A field may carry ``metadata={"json": "class"}`` to use another key in JSON (``class`` is a
Python keyword). Nested dataclasses, ``list[...]``, ``dict[str, ...]`` and ``X | None`` are
rebuilt from their type hints; anything else is taken as it is.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_HINTS: dict[type, dict[str, Any]] = {}


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


def _build(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(args[0], data) if len(args) == 1 else data
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, data)
    if origin in (list, tuple):
        (arg, *_) = typing.get_args(tp) or (Any,)
        return [_build(arg, v) for v in data]
    if origin is dict:
        args = typing.get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _build(val_tp, v) for k, v in data.items()}
    return data


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuild dataclass ``cls`` from ``to_dict`` output; unknown keys are ignored."""
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = _json_name(f)
        if key in data:
            kwargs[f.name] = _build(hints[f.name], data[key])
    return cls(**kwargs)


def dump_json(obj: Any, path: str | Path | None = None, indent: int = 2) -> str:
    """Serialize a dataclass to JSON text; write it to ``path`` when given."""
    text = json.dumps(to_dict(obj), indent=indent, allow_nan=False)
    if path is not None:
        Path(path).write_text(text + "\n", encoding="utf-8")
    return text


def load_json(cls: type[T], path_or_text: str | Path, schema_prefix: str, what: str) -> T:
    """Rebuild a versioned artefact from a path or JSON text; ValueError if not one.

    ``schema_prefix`` ("ccprof.profile/") is checked against the ``schema`` field, and
    ``what`` ("profile") names the artefact in the error.
    """
    text = str(path_or_text)
    if not text.lstrip().startswith("{"):
        text = Path(path_or_text).read_text(encoding="utf-8")
    data = json.loads(text)
    return check_schema(cls, data, schema_prefix, what)


def check_schema(cls: type[T], data: dict, schema_prefix: str, what: str) -> T:
    schema = data.get("schema", "") if isinstance(data, dict) else ""
    if not str(schema).startswith(schema_prefix):
        raise ValueError(f"not a ccprof {what} (schema {schema!r})")
    return from_dict(cls, data)
