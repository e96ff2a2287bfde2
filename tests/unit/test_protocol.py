"""testbed.protocol: every request names a unique operation and a dataclass result, every
message round-trips through the codec, and the node code's digest tells a changed node
apart."""

from __future__ import annotations

import dataclasses
import enum
import re
import shutil
import types
import typing
from pathlib import Path
from typing import Any, Union

import pytest

from testbed import codec, protocol
from testbed.codec import Json, from_json, to_json

PACKAGE = Path(protocol.__file__).resolve().parent


# -- a factory: minimal (required fields only) or full (every field) instances --------------
def make(tp: Any, full: bool, seed: int = 1) -> Any:
    """A valid value of type ``tp``; ``seed`` varies the scalars (so fields differ)."""
    if tp is Json or tp == Json or tp is typing.Any:
        return {"k": seed}
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        # JSON alias expanded by get_type_hints: a union of many scalars
        if len(inner) > 1:
            return f"v{seed}"
        return make(inner[0], full, seed)
    if origin is list:
        return [make(typing.get_args(tp)[0], full, seed)]
    if origin is tuple:
        return (make(typing.get_args(tp)[0], full, seed),)
    if origin is dict:
        return {f"k{seed}": make(typing.get_args(tp)[1], full, seed)}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, full, seed)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return list(tp)[-1]
    if tp is bool:
        return seed % 2 == 1
    if tp is int:
        return 1000 + seed
    if tp is float:
        return seed + 0.25
    if tp is str:
        return f"s{seed}"
    raise AssertionError(f"the factory does not know {tp!r}")


def build(cls: type, full: bool = False, seed: int = 1) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required or full:
            kwargs[f.name] = make(hints[f.name], full, seed + i)
    return cls(**kwargs)


REQUESTS = protocol.ALL_REQUESTS
RESULTS = sorted({r.RESULT for r in REQUESTS}, key=lambda c: c.__name__)


# -- the request catalogue ---------------------------------------------------------------------
def test_every_op_is_unique() -> None:
    ops = [r.OP for r in REQUESTS]
    duplicates = sorted({op for op in ops if ops.count(op) > 1})
    assert duplicates == []
    assert len(protocol.REQUESTS) == len(REQUESTS)
    assert all(protocol.REQUESTS[r.OP] is r for r in REQUESTS)


def test_every_request_class_is_listed() -> None:
    defined = {
        obj
        for obj in vars(protocol).values()
        if isinstance(obj, type)
        and issubclass(obj, protocol.Request)
        and obj is not protocol.Request
    }
    assert defined == set(REQUESTS)


@pytest.mark.parametrize("request_type", REQUESTS, ids=lambda r: r.OP)
def test_request_shape(request_type: type) -> None:
    assert dataclasses.is_dataclass(request_type)
    assert request_type.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert isinstance(request_type.OP, str) and request_type.OP
    assert isinstance(request_type.RESULT, type)
    assert dataclasses.is_dataclass(request_type.RESULT)
    # OP and RESULT are class variables, not fields of the message
    names = {f.name for f in dataclasses.fields(request_type)}
    assert not names & {"OP", "RESULT"}


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("request_type", REQUESTS, ids=lambda r: r.OP)
def test_request_round_trips(request_type: type, full: bool) -> None:
    request = build(request_type, full)
    data = codec.json_loads(codec.dumps(request))
    assert isinstance(data, dict)
    assert "OP" not in data and "RESULT" not in data
    assert from_json(request_type, data) == request


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("result_type", RESULTS, ids=lambda r: r.__name__)
def test_result_round_trips(result_type: type, full: bool) -> None:
    result = build(result_type, full)
    assert from_json(result_type, codec.json_loads(codec.dumps(result))) == result


def test_full_instances_differ_from_minimal_ones() -> None:
    """The factory really sets the optional fields (else the 'full' round trips prove
    nothing more than the minimal ones)."""
    differ = [r for r in REQUESTS if build(r, True) != build(r, False)]
    with_defaults = [
        r
        for r in REQUESTS
        if any(
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            for f in dataclasses.fields(r)
        )
    ]
    assert differ == with_defaults


def test_an_unknown_argument_is_refused_with_its_path() -> None:
    data = to_json(protocol.RouteGet("192.168.2.100"))
    assert isinstance(data, dict)
    data["via"] = "x"
    with pytest.raises(codec.DecodeError) as caught:
        from_json(protocol.RouteGet, data)
    assert str(caught.value) == "$.via: unknown field of RouteGet"


def test_nested_request_round_trip_keeps_the_types() -> None:
    request = protocol.NetApply(
        protocol.NetConfig(
            taps=[protocol.TapSpec("tap0", "192.168.2.1/24", "02:00:c0:a8:02:01")],
            routes=[protocol.RouteSpec("default", "192.168.10.10")],
        ),
        shape=True,
        bandwidth="1gbit",
    )
    again = from_json(protocol.NetApply, to_json(request))
    assert again == request
    assert isinstance(again.config.taps[0], protocol.TapSpec)


# -- the code digest --------------------------------------------------------------------------
@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "testbed"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_digest_is_stable_and_short() -> None:
    first = protocol.code_digest()
    assert first == protocol.code_digest()
    assert first == protocol.code_digest(PACKAGE)
    assert re.fullmatch("[0-9a-f]{16}", first), first


def test_a_copy_of_the_package_has_the_same_digest(package_copy: Path) -> None:
    assert protocol.code_digest(package_copy) == protocol.code_digest()


def test_digest_changes_when_a_node_file_changes(package_copy: Path) -> None:
    before = protocol.code_digest(package_copy)
    target = package_copy / "node" / "ramdump.py"
    target.write_text(target.read_text() + "\n# changed\n")
    assert protocol.code_digest(package_copy) != before


@pytest.mark.parametrize(
    "name", ["__init__.py", "arch.py", "codec.py", "errors.py", "loads.py", "protocol.py"]
)
def test_digest_changes_when_a_shared_module_changes(package_copy: Path, name: str) -> None:
    before = protocol.code_digest(package_copy)
    target = package_copy / name
    target.write_text(target.read_text() + "\n# changed\n")
    assert protocol.code_digest(package_copy) != before


def test_digest_changes_when_a_node_file_is_added(package_copy: Path) -> None:
    before = protocol.code_digest(package_copy)
    (package_copy / "node" / "extra.py").write_text("X = 1\n")
    assert protocol.code_digest(package_copy) != before


def test_digest_ignores_files_outside_the_node_code(package_copy: Path) -> None:
    before = protocol.code_digest(package_copy)
    for path in (package_copy / "cli" / "run.py", package_copy / "topology.py"):
        path.write_text(path.read_text() + "\n# changed\n")
    (package_copy / "node" / "notes.txt").write_text("not code\n")
    (package_copy / "checks" / "extra.py").write_text("X = 1\n")
    assert protocol.code_digest(package_copy) == before
