"""The topology as data: the seed's tables, round trips, and malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed import topology
from testbed.topology import Topology, TopologyError
from tests.seed_tables import SEED_TABLES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "topologies"
EXPECTED_ERRORS: dict[str, str] = json.loads((FIXTURES / "expected.json").read_text())


def test_seed_topology_is_the_seed() -> None:
    seed = topology.load()
    assert [(n.name, n.role, n.address) for n in seed.nodes] == [
        ("nfs", "nfs", "192.168.10.10"),
        ("gauss-a", "board", "192.168.10.100"),
        ("gauss-b", "board", "192.168.10.101"),
    ]
    assert seed.guest.address == "192.168.2.100/24" and seed.guest.gateway == "192.168.2.1"
    for node in seed.nodes:
        assert seed.expected_routes(node) == SEED_TABLES[node.name], node.name
    a, b = seed.boards
    assert a.taps[0].mac == b.taps[0].mac  # same MAC on both boards
    assert a.forwarding and b.forwarding and not seed.nfs.forwarding


def test_round_trip() -> None:
    seed = topology.load()
    again = Topology.from_dict(json.loads(json.dumps(seed.to_dict())))
    assert again == seed


def test_file_and_error_place(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text((FIXTURES.parent.parent.parent / "testbed" / "data" / "seed.toml").read_text())
    assert topology.load(path) == topology.load()


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_malformed_file_is_one_line_naming_file_place_problem(name: str) -> None:
    path = FIXTURES / name
    with pytest.raises(TopologyError) as info:
        topology.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert EXPECTED_ERRORS[name] in message, message
    assert message.endswith(": fix the topology file")


def test_missing_file() -> None:
    with pytest.raises(TopologyError, match="cannot read it"):
        topology.load("/nonexistent/lab.toml")


def test_unknown_node_names_the_choices() -> None:
    with pytest.raises(
        Exception, match="no node 'gauss-c' in the topology: use one of nfs, gauss-a, gauss-b"
    ):
        topology.load().node("gauss-c")
