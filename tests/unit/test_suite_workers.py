"""The suite's own parallel set-up: how many workers ``-n auto`` starts, and which subnets
each worker's labs get (tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pytest

from tests import conftest


@pytest.mark.parametrize(("cores", "workers"), [(None, 2), (1, 2), (2, 3), (3, 4), (4, 4), (64, 4)])
def test_auto_is_one_worker_per_core_and_one_more_at_most_four(
    monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config, cores: int | None, workers: int
) -> None:
    monkeypatch.setattr(conftest.os, "cpu_count", lambda: cores)
    assert conftest.pytest_xdist_auto_num_workers(pytestconfig) == workers


def test_the_longest_modules_exist() -> None:
    """A module renamed or split would silently drop out of the order."""
    missing = [m for m in conftest.LONGEST_MODULES if not (conftest.ROOT / m).is_file()]
    assert not missing
    assert len(set(conftest.LONGEST_MODULES)) == len(conftest.LONGEST_MODULES)


@dataclass
class FakeItem:
    nodeid: str


def test_the_longest_modules_go_out_first_in_their_order_then_the_rest_as_collected() -> None:
    first, second = conftest.LONGEST_MODULES[:2]
    collected = [
        FakeItem("tests/unit/test_a.py::test_1"),
        FakeItem(f"{second}::test_x"),
        FakeItem("tests/unit/test_b.py::test_2[p]"),
        FakeItem(f"{first}::test_y[1]"),
        FakeItem("tests/unit/test_a.py::test_3"),
        FakeItem(f"{first}::test_y[2]"),
    ]
    items = cast(list[pytest.Item], list(collected))
    conftest.longest_first(items)
    assert [cast(FakeItem, i).nodeid for i in items] == [
        f"{first}::test_y[1]",
        f"{first}::test_y[2]",
        f"{second}::test_x",
        "tests/unit/test_a.py::test_1",
        "tests/unit/test_b.py::test_2[p]",
        "tests/unit/test_a.py::test_3",
    ]


@pytest.mark.parametrize(
    ("worker", "subnet"), [("", "10.210.10."), ("gw0", "10.210.10."), ("gw3", "10.210.16.")]
)
def test_each_worker_has_its_own_subnets(
    monkeypatch: pytest.MonkeyPatch, worker: str, subnet: str
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    topology = conftest.worker_topology("suite.toml", 10)
    with open(topology) as f:
        text = f.read()
    assert subnet in text
    assert ("10.210.10." in text) == (subnet == "10.210.10.")


@pytest.mark.parametrize("worker", ["gw1", ""])
def test_only_the_workers_reorder(
    monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config, worker: str
) -> None:
    """A run in one process (-n 0, for -s or --pdb) keeps the unit tests first."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    collected = [FakeItem("tests/unit/test_a.py::t"), FakeItem(f"{conftest.LONGEST_MODULES[0]}::t")]
    items = cast(list[pytest.Item], list(collected))
    conftest.pytest_collection_modifyitems(cast(pytest.Session, None), pytestconfig, items)
    assert (items == collected) is (worker == "")
