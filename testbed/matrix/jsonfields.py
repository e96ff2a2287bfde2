"""Typed reading of JSON objects for the matrix records: each reader checks one field and
names it in the error (``$.migrations[0].total_ms: expected a number, got a string``)."""

from __future__ import annotations

import dataclasses
from typing import TypeAlias, TypeVar

Json: TypeAlias = "str | int | float | bool | None | list[Json] | dict[str, Json]"
JsonObject: TypeAlias = "dict[str, Json]"

T = TypeVar("T")


class RecordError(ValueError):
    """JSON that is not a record; ``path`` says where (``$.cell.smp``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def flat_json(record: object) -> JsonObject:
    """A dataclass whose fields are all str, int, float, bool or None, as a JSON object."""
    assert dataclasses.is_dataclass(record) and not isinstance(record, type)
    result: JsonObject = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        assert value is None or isinstance(value, (str, int, float, bool)), f.name
        result[f.name] = value
    return result


def json_object(data: Json, path: str, cls: type) -> JsonObject:
    if not isinstance(data, dict):
        raise RecordError(path, f"expected an object for {cls.__name__}, got {_kind(data)}")
    return data


def get(obj: JsonObject, key: str, tp: type[T], path: str) -> T:
    if key not in obj:
        raise RecordError(f"{path}.{key}", "missing")
    return check(obj[key], tp, f"{path}.{key}")


def optional(obj: JsonObject, key: str, tp: type[T], path: str) -> T | None:
    if key not in obj:
        raise RecordError(f"{path}.{key}", "missing")
    value = obj[key]
    return None if value is None else check(value, tp, f"{path}.{key}")


def strings(items: list[Json], path: str) -> list[str]:
    return [check(item, str, f"{path}[{i}]") for i, item in enumerate(items)]


def check(value: Json, tp: type[T], path: str) -> T:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]  # JSON has no int/float split
    if isinstance(value, bool) and tp is not bool:
        raise RecordError(path, f"expected {_name(tp)}, got a boolean")
    if not isinstance(value, tp):
        raise RecordError(path, f"expected {_name(tp)}, got {_kind(value)}")
    return value


def _name(tp: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}.get(
        tp, f"a {tp.__name__}"
    )


def _kind(data: Json) -> str:
    if data is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(data), "a number"
    )
