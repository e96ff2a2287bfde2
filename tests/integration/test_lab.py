"""The lab on real containers: the seed's routes, route debugging, idempotency, cleanup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from testbed.protocol import RouteEntry
from tests.conftest import SUITE_TOPOLOGY, lab_objects, run_cli, suite_topology
from tests.seed_tables import SEED_TABLES

pytestmark = pytest.mark.integration

LAB = "tblab"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "topologies"


SUITE = suite_topology()
# the suite's lab is the seed's on 10.210.10.0/24 (a user's lab on the seed's subnet is
# never touched; an xdist worker N > 0 has its own subnet); the unit tests prove the seed
# topology's tables are the seed's
NET = SUITE.network.subnet.rsplit(".", 1)[0] + "."


def seed_to_suite(route: RouteEntry) -> tuple[str, str | None, str | None]:
    def move(text: str | None) -> str | None:
        return text.replace("192.168.10.", NET) if text else text

    return (str(move(route.dst)), move(route.gateway), route.dev)


def cli(verb: str, *args: str) -> tuple[int, str, str]:
    if verb == "up" and "--topology" not in args:
        args = ("--topology", SUITE_TOPOLOGY, *args)
    proc = run_cli(verb, "--lab", LAB, *args)
    return proc.returncode, proc.stdout, proc.stderr


def cli_json(verb: str, *args: str) -> dict:
    code, out, err = cli(verb, "--json", *args)
    assert out, err
    return {"_exit": code, **json.loads(out)}


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, built_images: dict[str, str]) -> Iterator[dict]:
    run_cli("down", "--lab", LAB)
    state = cli_json("up")
    assert state["_exit"] == 0, state
    yield state
    run_cli("down", "--lab", LAB)


def test_up_makes_a_healthy_lab(lab: dict) -> None:
    assert lab["healthy"] and lab["subnet"] == SUITE.network.subnet
    assert {n["name"]: n["address"] for n in lab["nodes"]} == {
        "nfs": NET + "10",
        "gauss-a": NET + "100",
        "gauss-b": NET + "101",
    }
    assert all(n["state"] == "running" for n in lab["nodes"])


def test_every_node_routes_equal_the_seed_tables(lab: dict) -> None:
    result = cli_json("routes")
    assert result["_exit"] == 0 and result["matches"] is True
    for node in result["nodes"]:
        actual = sorted((r["dst"], r["gateway"], r["dev"]) for r in node["routes"])
        seed = sorted(
            seed_to_suite(RouteEntry(r.dst, r.gateway, r.dev)) for r in SEED_TABLES[node["node"]]
        )
        assert actual == seed, node["node"]
        assert node["matches"] is True


def test_least_privilege(docker_client: docker.DockerClient, lab: dict) -> None:
    for node in lab["nodes"]:
        host = docker_client.containers.get(node["container"]).attrs["HostConfig"]
        assert host["Privileged"] is False and host["NetworkMode"] != "host"
        assert host["CapDrop"] == ["ALL"]
        assert set(host["CapAdd"]) <= {"NET_ADMIN", "DAC_READ_SEARCH", "SETUID", "SETGID"}


def test_trace_nfs_to_the_guest_goes_via_gauss_a(lab: dict) -> None:
    trace = cli_json("trace", "nfs", "guest")
    assert trace["_exit"] == 0 and trace["reached"]
    assert [h["node"] for h in trace["hops"]] == ["nfs", "gauss-a"]
    assert trace["hops"][0]["gateway"] == NET + "100"
    assert trace["hops"][1]["dev"] == "tap0"
    assert trace["end"] == "handed to the guest on gauss-a's tap0"


def test_trace_names_the_break_of_a_wrong_route(lab: dict) -> None:
    code, _, err = cli(
        "exec", "nfs", "--", "ip", "route", "replace", "192.168.2.100/32", "via", NET + "50"
    )
    assert code == 0, err
    try:
        trace = cli_json("trace", "nfs", "192.168.2.100")
        assert trace["_exit"] == 1 and not trace["reached"]
        assert trace["end"] == (
            f"nfs sends it to {NET}50 on the lab network, which is no node of the lab"
        )
        routes = cli_json("routes", "nfs")
        assert routes["_exit"] == 1 and routes["matches"] is False
        assert routes["nodes"][0]["unexpected"] == [
            {"dst": "192.168.2.100/32", "gateway": NET + "50", "dev": "eth0"}
        ]
        # a second kind of break: gauss-a loses its route into the tap
        assert cli("exec", "gauss-a", "--", "ip", "route", "del", "192.168.2.0/24")[0] == 0
        assert (
            cli(
                "exec",
                "nfs",
                "--",
                "ip",
                "route",
                "replace",
                "192.168.2.100/32",
                "via",
                NET + "100",
            )[0]
            == 0
        )
        trace = cli_json("trace", "nfs", "guest")
        assert not trace["reached"] and trace["end"] == "routing loop: back at nfs"
        assert [h["node"] for h in trace["hops"]] == ["nfs", "gauss-a"]
    finally:
        assert cli("up")[0] == 0  # heals both
    assert cli_json("routes")["matches"] is True
    assert cli_json("trace", "nfs", "guest")["reached"]


def test_switch_route_flips_the_path(lab: dict) -> None:
    result = cli_json("switch-route", "--via", "gauss-b")
    assert result["_exit"] == 0 and result["gateway"] == NET + "101"
    assert 0 < result["kernel_ms"] < result["wall_ms"]
    try:
        trace = cli_json("trace", "nfs", "guest")
        assert [h["node"] for h in trace["hops"]] == ["nfs", "gauss-b"]
        routes = cli_json("routes", "nfs")
        assert routes["matches"] is True
        assert routes["nodes"][0]["notes"] == ["192.168.2.100/32 switched to gauss-b"]
    finally:
        assert cli_json("switch-route", "--via", "gauss-a")["gateway"] == NET + "100"
    assert [h["node"] for h in cli_json("trace", "nfs", "guest")["hops"]] == ["nfs", "gauss-a"]


def test_switch_route_refuses_a_non_board(lab: dict) -> None:
    code, _, err = cli("switch-route", "--via", "nfs")
    assert code == 2 and err.strip() == "error: nfs is not a board: use one of gauss-a, gauss-b"


def test_ping_inside_the_lab(lab: dict) -> None:
    code, out, _ = cli("ping", "nfs", "gauss-b", "--count", "2")
    assert code == 0 and "2 received" in out
    code, out, _ = cli("ping", "gauss-a", "nfs", "--count", "1")
    assert code == 0 and "1 received" in out
    code, out, _ = cli("ping", "nfs", "guest", "--count", "1")  # no guest runs yet
    assert code != 0 and "0 received" in out


def test_nothing_is_routed_out_of_the_lab(lab: dict) -> None:
    for node in ("nfs", "gauss-a", "gauss-b"):  # route lookups only: no packet leaves
        trace = cli_json("trace", node, "203.0.113.7")
        assert not trace["reached"]
        assert trace["end"].startswith("no route to 203.0.113.7 at nfs"), trace["end"]


def test_exec_passes_the_exit_status(lab: dict) -> None:
    assert cli("exec", "gauss-b", "--", "sh", "-c", "exit 7")[0] == 7
    code, out, _ = cli("exec", "gauss-b", "--", "cat", "/proc/sys/net/ipv4/ip_forward")
    assert code == 0 and out.strip() == "1"


def test_bandwidth_shapes_the_boards_lab_link(lab: dict) -> None:
    assert cli("up", "--bandwidth", "100mbit")[0] == 0
    try:
        for board in ("gauss-a", "gauss-b"):
            code, out, _ = cli("exec", board, "--", "tc", "qdisc", "show", "dev", "eth0")
            assert "tbf" in out and "rate 100Mbit" in out, out
    finally:
        assert cli("up")[0] == 0
    code, out, _ = cli("exec", "gauss-a", "--", "tc", "qdisc", "show", "dev", "eth0")
    assert "tbf" not in out


def test_up_twice_is_idempotent(docker_client: docker.DockerClient, lab: dict) -> None:
    before = {n["container"]: docker_client.containers.get(n["container"]).id for n in lab["nodes"]}
    again = cli_json("up")
    assert again["_exit"] == 0 and again["healthy"]
    after = {
        n["container"]: docker_client.containers.get(n["container"]).id for n in again["nodes"]
    }
    assert before == after
    assert sorted(lab_objects(docker_client, LAB)) == sorted(
        [*before, f"{LAB}-net", f"{LAB}-export"]
    )
    assert cli_json("routes")["matches"] is True


def test_a_second_lab_on_the_same_subnet_is_refused_and_leaves_nothing(
    docker_client: docker.DockerClient, lab: dict
) -> None:
    proc = run_cli("up", "--lab", "tbother", "--topology", SUITE_TOPOLOGY)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"error: the lab network {SUITE.network.subnet} overlaps {SUITE.network.subnet} of lab "
        f"'{LAB}': take that down (testbed down --lab {LAB})"
    ]
    assert lab_objects(docker_client, "tbother") == []


def test_graph_of_the_running_lab(lab: dict) -> None:
    code, out, _ = cli("graph")
    assert code == 0 and f"now: nfs reaches the guest via {NET}100" in out
    code, out, _ = cli("graph", "--format", "mermaid")
    assert code == 0 and out.startswith("graph LR")


def test_unknown_node_is_one_line(lab: dict) -> None:
    code, _, err = cli("routes", "gauss-c")
    assert code == 2
    assert err.strip() == (
        "error: no node 'gauss-c' in the topology: use one of nfs, gauss-a, gauss-b"
    )


def test_an_image_with_other_node_code_is_refused(
    docker_client: docker.DockerClient, lab: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The board image holds a copy of the node code taken at `testbed images build`: a
    host whose node code differs is refused by the real agent's hello, in one line."""
    from testbed import protocol
    from testbed.errors import UserError
    from testbed.lab.lab import Lab

    monkeypatch.setattr(protocol, "code_digest", lambda package_dir=None: "0123456789abcdef")
    lab_obj = Lab(docker_client, LAB)
    with pytest.raises(UserError) as refused:
        lab_obj.routes("nfs")
    message = str(refused.value)
    assert "differs from this testbed's (0123456789abcdef" in message
    assert message.endswith("run `testbed images build` (then `testbed up` recreates the nodes)")
    assert "\n" not in message


def test_status_and_down_leave_nothing(docker_client: docker.DockerClient, lab: dict) -> None:
    status = cli_json("status")
    assert status["_exit"] == 0 and status["healthy"]
    down = cli_json("down")
    assert down["_exit"] == 0 and len(down["containers"]) == 3
    assert down["networks"] == [f"{LAB}-net"] and down["volumes"] == [f"{LAB}-export"]
    assert lab_objects(docker_client, LAB) == []
    status = cli_json("status")
    assert status["_exit"] == 1 and status["exists"] is False


MALFORMED = [
    "syntax.toml",
    "unknown-key.toml",
    "outside-subnet.toml",
    "duplicate-name.toml",
    "unreachable-gateway.toml",
    "bad-mac.toml",
    "no-nfs.toml",
]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_topology_is_one_line_and_leaves_nothing(
    docker_client: docker.DockerClient, built_images: dict[str, str], name: str
) -> None:
    proc = run_cli("up", "--topology", str(FIXTURES / name), "--lab", "tbbad")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {FIXTURES / name}: "), proc.stderr
    assert lab_objects(docker_client, "tbbad") == []


def test_routes_of_a_lab_that_is_not_up() -> None:
    proc = run_cli("routes", "--lab", "tbnone")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: lab 'tbnone' is not up: start it with `testbed up`"
