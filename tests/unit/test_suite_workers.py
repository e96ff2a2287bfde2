"""The suite's own parallel set-up: how many workers ``-n auto`` starts, and which subnets
each worker's labs get (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests import conftest


@pytest.mark.parametrize(("cores", "workers"), [(None, 1), (1, 1), (2, 2), (4, 4), (64, 4)])
def test_auto_is_one_worker_per_core_at_most_four(
    monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config, cores: int | None, workers: int
) -> None:
    monkeypatch.setattr(conftest.os, "cpu_count", lambda: cores)
    assert conftest.pytest_xdist_auto_num_workers(pytestconfig) == workers


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
