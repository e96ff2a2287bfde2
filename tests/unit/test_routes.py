"""testbed.lab.routes against a fake lab: each node's table beside the seed topology's, and
paths followed lookup by lookup (the fake answers like the kernel: local addresses first,
then the longest matching prefix of the node's table)."""

from __future__ import annotations

import ipaddress

import pytest

from testbed import topology
from testbed.errors import UserError
from testbed.lab.routes import Hop, RouteSource, compare, resolve, trace
from testbed.protocol import RouteEntry, RouteLookup
from tests.seed_tables import SEED_TABLES

SEED = topology.load()
GUEST = "192.168.2.100"
GUEST_ROUTE = f"{GUEST}/32"


def seed_tables() -> dict[str, list[RouteEntry]]:
    return {
        node: [RouteEntry(r.dst, r.gateway, r.dev) for r in routes]
        for node, routes in SEED_TABLES.items()
    }


class FakeLab:
    """Canned routing tables, local addresses and forwarding per node; ``answers``
    overrides what ``ip route get`` says for one (node, destination)."""

    def __init__(self) -> None:
        self.tables = seed_tables()
        self.local = {
            "nfs": {"192.168.10.10"},
            "gauss-a": {"192.168.10.100", "192.168.2.1"},
            "gauss-b": {"192.168.10.101", "192.168.2.1"},
        }
        self.forwarding = {"nfs": False, "gauss-a": True, "gauss-b": True}
        self.answers: dict[tuple[str, str], RouteLookup] = {}
        self.asked: list[tuple[str, str]] = []

    def routes(self, node: str) -> list[RouteEntry]:
        return list(self.tables[node])

    def route_get(self, node: str, dst: str) -> RouteLookup:
        self.asked.append((node, dst))
        forwarding = self.forwarding[node]
        if (node, dst) in self.answers:
            return self.answers[(node, dst)]
        if dst in self.local[node]:
            return RouteLookup(dst, None, "lo", dst, "local", None, forwarding)
        address = ipaddress.IPv4Address(dst)
        best: tuple[int, RouteEntry] | None = None
        for route in self.tables[node]:
            net = ipaddress.IPv4Network("0.0.0.0/0" if route.dst == "default" else route.dst)
            if address in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, route)
        if best is None:
            return RouteLookup(dst, error="Network is unreachable", forwarding=forwarding)
        route = best[1]
        return RouteLookup(dst, route.gateway, route.dev, None, "unicast", None, forwarding)

    def set_route(self, node: str, dst: str, gateway: str | None, dev: str = "eth0") -> None:
        self.tables[node] = [r for r in self.tables[node] if r.dst != dst]
        self.tables[node].append(RouteEntry(dst, gateway, dev))


def test_the_fake_is_a_route_source() -> None:
    source: RouteSource = FakeLab()
    assert source.routes("nfs") == seed_tables()["nfs"]


# -- compare() ---------------------------------------------------------------------------------
@pytest.mark.parametrize("node", ["nfs", "gauss-a", "gauss-b"])
def test_the_seed_tables_match(node: str) -> None:
    lab = FakeLab()
    result = compare(SEED, node, lab.routes(node))
    assert result.matches
    assert result.missing == [] and result.unexpected == [] and result.notes == []
    assert result.expected == seed_tables()[node]
    assert result.node == node


def test_the_order_of_the_table_does_not_matter() -> None:
    actual = list(reversed(seed_tables()["gauss-a"]))
    assert compare(SEED, "gauss-a", actual).matches


def test_a_missing_route_is_reported() -> None:
    lab = FakeLab()
    lab.tables["gauss-a"] = [r for r in lab.tables["gauss-a"] if r.dst != "default"]
    result = compare(SEED, "gauss-a", lab.routes("gauss-a"))
    assert not result.matches
    assert result.missing == [RouteEntry("default", "192.168.10.10", "eth0")]
    assert result.unexpected == []


def test_an_unexpected_route_is_reported() -> None:
    lab = FakeLab()
    lab.set_route("gauss-b", "10.0.0.0/8", "192.168.10.10")
    result = compare(SEED, "gauss-b", lab.routes("gauss-b"))
    assert not result.matches
    assert result.missing == []
    assert result.unexpected == [RouteEntry("10.0.0.0/8", "192.168.10.10", "eth0")]


def test_a_changed_gateway_is_missing_and_unexpected() -> None:
    lab = FakeLab()
    lab.set_route("gauss-a", "default", "192.168.10.1")  # Docker's gateway left in place
    result = compare(SEED, "gauss-a", lab.routes("gauss-a"))
    assert result.missing == [RouteEntry("default", "192.168.10.10", "eth0")]
    assert result.unexpected == [RouteEntry("default", "192.168.10.1", "eth0")]


def test_the_nfs_route_switched_to_gauss_b_is_no_difference() -> None:
    lab = FakeLab()
    lab.set_route("nfs", GUEST_ROUTE, "192.168.10.101")
    result = compare(SEED, "nfs", lab.routes("nfs"))
    assert result.matches
    assert result.notes == [f"{GUEST_ROUTE} switched to gauss-b"]
    assert RouteEntry(GUEST_ROUTE, "192.168.10.101", "eth0") in result.expected


def test_the_nfs_route_to_no_board_is_a_difference() -> None:
    lab = FakeLab()
    lab.set_route("nfs", GUEST_ROUTE, "192.168.10.50")
    result = compare(SEED, "nfs", lab.routes("nfs"))
    assert not result.matches
    assert result.notes == []
    assert result.missing == [RouteEntry(GUEST_ROUTE, "192.168.10.100", "eth0")]
    assert result.unexpected == [RouteEntry(GUEST_ROUTE, "192.168.10.50", "eth0")]


def test_a_board_route_to_the_other_board_is_a_difference() -> None:
    """Only the NFS server's host route to the guest may move between boards."""
    lab = FakeLab()
    lab.set_route("gauss-a", "default", "192.168.10.101")
    result = compare(SEED, "gauss-a", lab.routes("gauss-a"))
    assert not result.matches and result.notes == []


# -- trace() -----------------------------------------------------------------------------------
def test_trace_nfs_to_the_guest_via_gauss_a() -> None:
    lab = FakeLab()
    result = trace(SEED, lab, "nfs", "guest")
    assert result.reached
    assert result.dst == GUEST
    assert result.end == "handed to the guest on gauss-a's tap0"
    assert result.hops == [
        Hop("nfs", GUEST, "192.168.10.100", "eth0", "next hop gauss-a"),
        Hop("gauss-a", GUEST, None, "tap0", "into tap0"),
    ]
    assert lab.asked == [("nfs", GUEST), ("gauss-a", GUEST)]


def test_trace_after_the_switch_goes_via_gauss_b() -> None:
    lab = FakeLab()
    lab.set_route("nfs", GUEST_ROUTE, "192.168.10.101")
    result = trace(SEED, lab, "nfs", GUEST)
    assert result.reached
    assert result.end == "handed to the guest on gauss-b's tap0"
    assert [h.node for h in result.hops] == ["nfs", "gauss-b"]


def test_trace_to_an_address_on_the_tap_that_is_not_the_guest() -> None:
    result = trace(SEED, FakeLab(), "gauss-b", "192.168.2.77")
    assert result.reached
    assert result.end == "handed to 192.168.2.77 on gauss-b's tap0"


def test_a_broken_path_to_no_node() -> None:
    lab = FakeLab()
    lab.set_route("nfs", GUEST_ROUTE, "192.168.10.50")
    result = trace(SEED, lab, "nfs", "guest")
    assert not result.reached
    assert result.end == (
        "nfs sends it to 192.168.10.50 on the lab network, which is no node of the lab"
    )
    assert result.hops == [Hop("nfs", GUEST, "192.168.10.50", "eth0", "next hop 192.168.10.50")]


def test_a_node_that_does_not_forward() -> None:
    lab = FakeLab()
    lab.forwarding["gauss-a"] = False
    result = trace(SEED, lab, "nfs", "guest")
    assert not result.reached
    assert result.end == "gauss-a receives the packet but does not forward it"
    assert result.hops[-1] == Hop("gauss-a", GUEST, None, None, "does not forward")


def test_the_source_need_not_forward() -> None:
    """The NFS server sends its own packets; forwarding is only for others' packets."""
    lab = FakeLab()
    assert not lab.forwarding["nfs"]
    assert trace(SEED, lab, "nfs", "guest").reached


def test_a_routing_loop() -> None:
    lab = FakeLab()
    lab.forwarding["nfs"] = True
    lab.set_route("nfs", "192.168.3.0/24", "192.168.10.100")  # gauss-a sends it back
    result = trace(SEED, lab, "nfs", "192.168.3.7")
    assert not result.reached
    assert result.end == "routing loop: back at nfs"
    assert [h.node for h in result.hops] == ["nfs", "gauss-a"]
    assert [h.gateway for h in result.hops] == ["192.168.10.100", "192.168.10.10"]


def test_no_route() -> None:
    result = trace(SEED, FakeLab(), "nfs", "192.168.3.7")  # nfs has no default route
    assert not result.reached
    assert result.end == "no route to 192.168.3.7 at nfs: Network is unreachable"
    assert result.hops == [Hop("nfs", "192.168.3.7", None, None, "Network is unreachable")]


def test_no_route_further_along() -> None:
    lab = FakeLab()
    lab.answers[("gauss-a", GUEST)] = RouteLookup(GUEST, error="No route to host", forwarding=True)
    result = trace(SEED, lab, "nfs", "guest")
    assert not result.reached
    assert result.end == f"no route to {GUEST} at gauss-a: No route to host"


def test_delivery_on_link_to_a_node() -> None:
    result = trace(SEED, FakeLab(), "gauss-a", "nfs")
    assert result.reached
    assert result.end == "delivered to nfs"
    assert result.hops == [
        Hop("gauss-a", "192.168.10.10", None, "eth0", "next hop nfs"),
        Hop("nfs", "192.168.10.10", None, None, "local address"),
    ]


def test_delivery_to_the_nodes_own_address() -> None:
    result = trace(SEED, FakeLab(), "nfs", "nfs")
    assert result.reached and result.end == "delivered to nfs"
    assert result.hops == [Hop("nfs", "192.168.10.10", None, "lo", "local address")]
    tap = trace(SEED, FakeLab(), "gauss-a", "192.168.2.1")  # the tap's address is local
    assert tap.reached and tap.end == "delivered to gauss-a"


def test_delivery_through_a_gateway_to_a_forwarding_node() -> None:
    lab = FakeLab()
    lab.local["gauss-a"].add("10.9.9.9")
    lab.forwarding["nfs"] = True
    lab.set_route("nfs", "10.9.9.0/24", "192.168.10.100")
    result = trace(SEED, lab, "nfs", "10.9.9.9")
    assert result.reached
    assert result.end == "delivered to gauss-a"


def test_delivery_through_a_gateway_to_a_node_that_does_not_forward() -> None:
    lab = FakeLab()
    lab.local["nfs"].add("10.9.9.9")  # a second address of the NFS server
    result = trace(SEED, lab, "gauss-a", "10.9.9.9")  # gauss-a: default via nfs
    assert result.end == "delivered to nfs"  # actual: "nfs receives ... does not forward it"
    assert result.reached


def test_trace_from_an_unknown_node() -> None:
    with pytest.raises(UserError, match="no node 'nope'"):
        trace(SEED, FakeLab(), "nope", "guest")


# -- resolve() ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, address",
    [
        ("nfs", "192.168.10.10"),
        ("gauss-a", "192.168.10.100"),
        ("gauss-b", "192.168.10.101"),
        ("guest", GUEST),
        ("192.168.2.100", GUEST),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_resolve(target: str, address: str) -> None:
    assert resolve(SEED, target) == address


@pytest.mark.parametrize(
    "target, message",
    [
        (
            "999.1.1.1",
            "destination '999.1.1.1' is not an IPv4 address: give a node name, guest, or a.b.c.d",
        ),
        (
            "1.2.3",
            "destination '1.2.3' is not an IPv4 address: give a node name, guest, or a.b.c.d",
        ),
        (
            "nope",
            "unknown destination 'nope': use a node (nfs, gauss-a, gauss-b), guest, or an address",
        ),
        ("", "unknown destination '': use a node (nfs, gauss-a, gauss-b), guest, or an address"),
    ],
)
def test_resolve_refuses_bad_targets_in_one_line(target: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        resolve(SEED, target)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
