"""testbed.codec: dataclasses to JSON and back, driven by the type hints, with a
DecodeError whose path says where the JSON does not fit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum, StrEnum

import pytest

from testbed.codec import DecodeError, Json, dumps, from_json, json_loads, to_json


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


class Level(Enum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Leaf:
    n: int
    x: float = 0.5


@dataclass(frozen=True)
class Branch:
    name: str
    leaf: Leaf
    leaves: list[Leaf] = field(default_factory=list)
    maybe: Leaf | None = None
    by_name: dict[str, Leaf] = field(default_factory=dict)
    pair: tuple[int, ...] = ()
    colour: Colour = Colour.RED
    level: Level = Level.LOW
    flag: bool = False
    note: str | None = None
    raw: Json = None
    raw_map: dict[str, Json] = field(default_factory=dict)


@dataclass(frozen=True)
class Tree:
    root: Branch
    branches: list[Branch]
    depth: int | None = None


@dataclass(frozen=True)
class Numbers:
    i: int
    f: float
    b: bool
    s: str


@dataclass(frozen=True)
class Optional1:
    inner: Leaf | None


def full_tree() -> Tree:
    branch = Branch(
        name="b",
        leaf=Leaf(1, 2.5),
        leaves=[Leaf(2), Leaf(3, -1.0)],
        maybe=Leaf(4, 0.0),
        by_name={"a": Leaf(5), "b": Leaf(6, 7.25)},
        pair=(7, 8, 9),
        colour=Colour.GREEN,
        level=Level.HIGH,
        flag=True,
        note="text",
        raw="raw text",
        raw_map={"x": [1, 2], "y": None},
    )
    return Tree(root=branch, branches=[Branch("c", Leaf(0)), branch], depth=3)


# -- round trips -----------------------------------------------------------------------------
def test_round_trip_of_nested_dataclasses_through_json_text() -> None:
    tree = full_tree()
    text = dumps(tree)
    again = from_json(Tree, json_loads(text))
    assert again == tree
    assert type(again.root.pair) is tuple
    assert again.root.colour is Colour.GREEN
    assert again.root.level is Level.HIGH


def test_to_json_shape() -> None:
    data = to_json(full_tree())
    assert isinstance(data, dict)
    root = data["root"]
    assert isinstance(root, dict)
    assert root["leaf"] == {"n": 1, "x": 2.5}
    assert root["pair"] == [7, 8, 9]  # a tuple is a JSON list
    assert root["colour"] == "green"  # an enum is its value
    assert root["level"] == 2
    assert root["maybe"] == {"n": 4, "x": 0.0}
    assert root["by_name"] == {"a": {"n": 5, "x": 0.5}, "b": {"n": 6, "x": 7.25}}
    assert root["raw"] == "raw text"
    assert root["raw_map"] == {"x": [1, 2], "y": None}
    # what to_json gives is plain JSON: it survives json.dumps unchanged
    assert json.loads(json.dumps(data)) == data


def test_defaults_fill_absent_fields_and_none_stays_none() -> None:
    branch = from_json(Branch, {"name": "n", "leaf": {"n": 1}})
    assert branch == Branch("n", Leaf(1, 0.5))
    assert branch.maybe is None and branch.note is None and branch.leaves == []
    assert from_json(Branch, {"name": "n", "leaf": {"n": 1}, "maybe": None}).maybe is None
    assert from_json(Tree, to_json(Tree(Branch("r", Leaf(1)), [], None))).depth is None


@pytest.mark.parametrize("raw", [None, 1, 2.5, "s", True, False])
def test_json_alias_passes_raw_scalars_through(raw: Json) -> None:
    branch = from_json(Branch, {"name": "n", "leaf": {"n": 1}, "raw": raw})
    assert branch.raw == raw
    assert type(branch.raw) is type(raw)


@pytest.mark.parametrize(
    "raw_map", [{}, {"a": 1, "b": None, "c": True}, {"x": [1, "two", None, 2.5], "y": {"z": 1}}]
)
def test_dict_of_json_passes_json_through(raw_map: dict[str, Json]) -> None:
    branch = from_json(Branch, {"name": "n", "leaf": {"n": 1}, "raw_map": raw_map})
    assert branch.raw_map == raw_map
    assert [type(v) for v in branch.raw_map.values()] == [type(v) for v in raw_map.values()]


def test_int_is_accepted_as_float_and_becomes_a_float() -> None:
    leaf = from_json(Leaf, {"n": 1, "x": 3})
    assert leaf.x == 3.0 and type(leaf.x) is float


def test_scalars_of_the_right_type_are_kept() -> None:
    numbers = from_json(Numbers, {"i": 0, "f": -2.5, "b": False, "s": ""})
    assert numbers == Numbers(0, -2.5, False, "")
    assert type(numbers.i) is int and type(numbers.b) is bool


def test_to_json_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(TypeError, match="cannot encode set"):
        to_json({1, 2})


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, path, problem",
    [
        ({"i": True, "f": 1.0, "b": True, "s": "s"}, "$.i", "expected an integer, got a boolean"),
        ({"i": 1.5, "f": 1.0, "b": True, "s": "s"}, "$.i", "expected an integer, got a number"),
        ({"i": "1", "f": 1.0, "b": True, "s": "s"}, "$.i", "expected an integer, got a string"),
        ({"i": 1, "f": False, "b": True, "s": "s"}, "$.f", "expected a number, got a boolean"),
        ({"i": 1, "f": "1.0", "b": True, "s": "s"}, "$.f", "expected a number, got a string"),
        ({"i": 1, "f": 1.0, "b": 1, "s": "s"}, "$.b", "expected bool, got a number"),
        ({"i": 1, "f": 1.0, "b": True, "s": None}, "$.s", "expected str, got null"),
        ({"i": 1, "f": 1.0, "b": True, "s": ["s"]}, "$.s", "expected str, got a list"),
    ],
)
def test_wrong_scalar_type_names_the_field(data: Json, path: str, problem: str) -> None:
    with pytest.raises(DecodeError) as caught:
        from_json(Numbers, data)
    assert caught.value.path == path
    assert caught.value.problem == problem
    assert str(caught.value) == f"{path}: {problem}"


def test_bool_is_not_an_int_even_inside_a_list_or_optional() -> None:
    with pytest.raises(DecodeError) as caught:
        from_json(Tree, {"root": {"name": "r", "leaf": {"n": 1}}, "branches": [], "depth": True})
    assert caught.value.path == "$.depth"
    assert "boolean" in caught.value.problem
    with pytest.raises(DecodeError) as caught:
        from_json(Branch, {"name": "r", "leaf": {"n": 1}, "pair": [1, False]})
    assert caught.value.path == "$.pair[1]"


@pytest.mark.parametrize(
    "data, path, problem",
    [
        # deep inside lists, dicts and nested dataclasses
        (
            {"root": {"name": "r", "leaf": {"n": 1}}, "branches": [{"name": "x", "leaf": "no"}]},
            "$.branches[0].leaf",
            "expected an object for Leaf, got a string",
        ),
        (
            {
                "root": {"name": "r", "leaf": {"n": 1}, "leaves": [{"n": 1}, {"n": "2"}]},
                "branches": [],
            },
            "$.root.leaves[1].n",
            "expected an integer, got a string",
        ),
        (
            {
                "root": {"name": "r", "leaf": {"n": 1}, "by_name": {"k": {"n": None}}},
                "branches": [],
            },
            "$.root.by_name.k.n",
            "expected an integer, got null",
        ),
        (
            {"root": {"name": "r", "leaf": {"n": 1}}, "branches": {}},
            "$.branches",
            "expected a list, got an object",
        ),
        (
            {"root": {"name": "r", "leaf": {"n": 1}, "by_name": []}, "branches": []},
            "$.root.by_name",
            "expected an object, got a list",
        ),
        (
            {"root": {"name": "r", "leaf": {"n": 1}, "colour": "blue"}, "branches": []},
            "$.root.colour",
            "'blue' is not a Colour",
        ),
        (
            {"root": {"name": "r", "leaf": {"n": 1}, "level": 3}, "branches": []},
            "$.root.level",
            "3 is not a Level",
        ),
        # missing fields
        ({"branches": []}, "$.root", "missing"),
        ({"root": {"leaf": {"n": 1}}, "branches": []}, "$.root.name", "missing"),
        ({"root": {"name": "r", "leaf": {}}, "branches": []}, "$.root.leaf.n", "missing"),
        # unknown fields
        (
            {"root": {"name": "r", "leaf": {"n": 1}}, "branches": [], "colour": "red"},
            "$.colour",
            "unknown field of Tree",
        ),
        (
            {"root": {"name": "r", "leaf": {"n": 1, "y": 2, "z": 3}}, "branches": []},
            "$.root.leaf.y",
            "unknown field of Leaf",
        ),
    ],
)
def test_decode_error_path(data: Json, path: str, problem: str) -> None:
    with pytest.raises(DecodeError) as caught:
        from_json(Tree, data)
    assert (caught.value.path, caught.value.problem) == (path, problem)


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(DecodeError) as caught:
        from_json(Leaf, [1])
    assert caught.value.path == "$"
    assert caught.value.problem == "expected an object for Leaf, got a list"


def test_a_wrong_type_in_an_optional_field_is_refused() -> None:
    with pytest.raises(DecodeError) as caught:
        from_json(Optional1, {"inner": 5})
    assert caught.value.path == "$.inner"
    assert "expected an object for Leaf" in caught.value.problem


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        from_json(Leaf, {"n": "x"})


def test_unsupported_field_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match=r"\$\.v: unsupported field type"):
        from_json(Unsupported, {"v": [1]})


@dataclass(frozen=True)
class Unsupported:
    v: set[int]


def test_path_inside_an_optional_dataclass_points_at_the_field_inside() -> None:
    with pytest.raises(DecodeError) as caught:
        from_json(Optional1, {"inner": {"n": "x"}})
    assert caught.value.path == "$.inner.n"  # actual: "$.inner"


def test_missing_inside_an_optional_dataclass_names_the_missing_field() -> None:
    with pytest.raises(DecodeError) as caught:
        from_json(Optional1, {"inner": {}})
    assert str(caught.value) == "$.inner.n: missing"  # actual: "$.inner: missing"


@pytest.mark.parametrize("raw", [[1], {"a": 1}, [[1]], {"a": {"b": 1}}])
def test_json_field_passes_lists_and_objects_through(raw: Json) -> None:
    branch = from_json(Branch, {"name": "n", "leaf": {"n": 1}, "raw": raw})
    assert branch.raw == raw


def test_qmp_event_with_nested_data_round_trips() -> None:
    from testbed.protocol import QmpEvent

    event = QmpEvent(1, "X", 1.5, {"info": {"a": {"b": [1, 2]}}})
    assert from_json(QmpEvent, to_json(event)) == event


def test_a_str_enum_field_of_the_product_round_trips() -> None:
    from testbed.checks.base import CheckResult, Outcome

    result = CheckResult("ram-pages", "m1", Outcome.FAIL, "2 pages differ", {"pages": [1, 2]})
    data = to_json(result)
    assert isinstance(data, dict) and data["outcome"] == "fail"
    again = from_json(CheckResult, data)
    assert again == result and again.outcome is Outcome.FAIL
