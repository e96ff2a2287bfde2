"""Dataclasses to JSON and back, driven by their type hints (standard library only: the
node agent imports this inside the containers).

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``None``, dataclasses,
``enum.Enum`` subclasses, ``list[T]``, ``tuple[T, ...]``, ``dict[str, T]``, unions of
these (``T | None``) and :data:`Json` (raw JSON, passed through).  Anything else is a
programming error and raises :class:`TypeError` at the first use."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from typing import TypeVar, Union

Json = Union[str, int, float, bool, None, list["Json"], dict[str, "Json"]]  # noqa: UP007
JsonObject = dict[str, Json]

T = TypeVar("T")


class DecodeError(ValueError):
    """The JSON does not fit the dataclass; ``path`` says where."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def to_json(obj: object) -> Json:
    """A dataclass (or a value of a supported type) as JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return to_json(obj.value)
    if isinstance(obj, (list, tuple)):
        return [to_json(item) for item in obj]
    if isinstance(obj, dict):
        return {str(key): to_json(value) for key, value in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: object) -> str:
    return json.dumps(to_json(obj), separators=(",", ":"))


def json_loads(text: str | bytes) -> Json:
    value: Json = json.loads(text)
    return value


def from_json(cls: type[T], data: Json, path: str = "$") -> T:
    """``data`` decoded into ``cls`` (a dataclass), checking every field's type."""
    return typing.cast(T, _decode(cls, data, path))


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls, include_extras=False)


def _is_json(tp: object) -> bool:
    """The :data:`Json` alias, also as ``get_type_hints`` re-evaluates it (its recursive
    members stay forward references)."""
    if tp is Json or tp == Json:
        return True
    if isinstance(tp, typing.ForwardRef):
        return tp.__forward_arg__ == "Json"
    if typing.get_origin(tp) in (Union, types.UnionType):
        return any(
            typing.get_origin(arg) in (list, dict)
            and any(
                isinstance(x, typing.ForwardRef) and x.__forward_arg__ == "Json"
                for x in typing.get_args(arg)
            )
            for arg in typing.get_args(tp)
        )
    return False


def _decode(tp: object, data: Json, path: str) -> object:
    if tp is typing.Any or _is_json(tp):
        return data
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        candidates = [arg for arg in args if arg is not type(None)]
        errors: list[DecodeError] = []
        for arg in candidates:
            try:
                return _decode(arg, data, path)
            except DecodeError as exc:
                errors.append(exc)
        if len(errors) == 1:  # T | None: the inner error, with its own path
            raise errors[0]
        raise DecodeError(path, " or ".join(e.problem for e in errors) or "no matching type")
    if origin is list or origin is tuple:
        if not isinstance(data, list):
            raise DecodeError(path, f"expected a list, got {_kind(data)}")
        args = typing.get_args(tp)
        item = args[0] if args else typing.Any
        items = [_decode(item, value, f"{path}[{i}]") for i, value in enumerate(data)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(data, dict):
            raise DecodeError(path, f"expected an object, got {_kind(data)}")
        value_type = typing.get_args(tp)[1]
        return {key: _decode(value_type, value, f"{path}.{key}") for key, value in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise DecodeError(path, f"expected an object for {tp.__name__}, got {_kind(data)}")
        hints = _hints(tp)
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            if f.name in data:
                kwargs[f.name] = _decode(hints[f.name], data[f.name], f"{path}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DecodeError(f"{path}.{f.name}", "missing")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(tp)})
        if unknown:
            raise DecodeError(f"{path}.{unknown[0]}", f"unknown field of {tp.__name__}")
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise DecodeError(path, f"{data!r} is not a {tp.__name__}") from None
    if tp is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        raise DecodeError(path, f"expected a number, got {_kind(data)}")
    if tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise DecodeError(path, f"expected an integer, got {_kind(data)}")
    if tp is bool or tp is str:
        if isinstance(data, tp):
            return data
        raise DecodeError(path, f"expected {tp.__name__}, got {_kind(data)}")
    if tp is type(None):
        if data is None:
            return None
        raise DecodeError(path, f"expected null, got {_kind(data)}")
    raise TypeError(f"{path}: unsupported field type {tp!r}")


def _kind(data: Json) -> str:
    if data is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(data), "a number"
    )
