"""Route analysis, pure: each node's table against the topology, and a path followed
``ip route get`` by ``ip route get`` through the lab.

Nothing here touches Docker: the answers come from a :class:`RouteSource` (the agents of
a real lab, or a fake lab in the unit tests)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from testbed.errors import UserError
from testbed.protocol import RouteEntry, RouteLookup
from testbed.topology import Topology


class RouteSource(Protocol):
    def routes(self, node: str) -> list[RouteEntry]: ...

    def route_get(self, node: str, dst: str) -> RouteLookup: ...


@dataclass(frozen=True)
class NodeRoutes:
    node: str
    expected: list[RouteEntry]
    actual: list[RouteEntry]
    missing: list[RouteEntry] = field(default_factory=list)
    unexpected: list[RouteEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.missing and not self.unexpected


@dataclass(frozen=True)
class Hop:
    node: str
    dst: str
    gateway: str | None
    dev: str | None
    note: str = ""


@dataclass(frozen=True)
class Trace:
    src: str
    dst: str
    hops: list[Hop]
    reached: bool
    end: str  # where the path ends, or where and why it breaks


def _key(route: RouteEntry) -> tuple[str, str | None, str | None]:
    return (route.dst, route.gateway, route.dev)


def compare(topology: Topology, node_name: str, actual: list[RouteEntry]) -> NodeRoutes:
    """The node's main table against the topology.  The NFS server's host route to the
    guest may point at any board: switching it is the procedure, not a difference."""
    node = topology.node(node_name)
    expected = [RouteEntry(r.dst, r.gateway, r.dev) for r in topology.expected_routes(node)]
    notes = []
    if node.role == "nfs":
        guest_route = f"{topology.guest.ip}/32"
        boards = {b.address: b.name for b in topology.boards}
        planned = next((r for r in expected if r.dst == guest_route), None)
        for route in actual:
            if (
                planned is not None
                and route.dst == guest_route
                and route.gateway != planned.gateway
                and route.gateway in boards
            ):
                expected = [route if r is planned else r for r in expected]
                notes.append(f"{guest_route} switched to {boards[str(route.gateway)]}")
    actual_keys = {_key(r) for r in actual}
    expected_keys = {_key(r) for r in expected}
    return NodeRoutes(
        node_name,
        expected,
        actual,
        missing=[r for r in expected if _key(r) not in actual_keys],
        unexpected=[r for r in actual if _key(r) not in expected_keys],
        notes=notes,
    )


def check_address(text: str, what: str = "destination") -> str:
    """An IPv4 address, validated on the host (one line naming the problem otherwise)."""
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise UserError(
            f"{what} {text!r} is not an IPv4 address", "give a node name, guest, or a.b.c.d"
        ) from None
    if address.is_unspecified or address.is_multicast or int(address) == 0xFFFFFFFF:
        raise UserError(
            f"{what} {text} is not a unicast address",
            "give a node name, guest, or the address of one host",
        )
    return str(address)


def resolve(topology: Topology, target: str) -> str:
    """A node name, ``guest``, or an IPv4 address -> an address."""
    if target == "guest":
        return topology.guest.ip
    if target in topology.node_names:
        return topology.node(target).address
    if target and (target[0].isdigit()):
        return check_address(target)
    raise UserError(
        f"unknown destination {target!r}",
        f"use a node ({', '.join(topology.node_names)}), guest, or an address",
    )


def trace(topology: Topology, source: RouteSource, src: str, dst: str) -> Trace:
    """Follow the kernel's route lookups node by node until the path reaches its
    destination (a node, or a tap towards the guest), or breaks."""
    topology.node(src)
    address = resolve(topology, dst)
    hops: list[Hop] = []
    current = src
    visited: set[str] = set()
    while True:
        if current in visited:
            return Trace(src, address, hops, False, f"routing loop: back at {current}")
        visited.add(current)
        node = topology.node(current)
        answer = source.route_get(current, address)
        if answer.error is None and (answer.type == "local" or node.address == address):
            hops.append(Hop(current, address, None, answer.dev, "local address"))
            return Trace(src, address, hops, True, f"delivered to {current}")
        if hops and not answer.forwarding:
            hops.append(Hop(current, address, None, None, "does not forward"))
            return Trace(
                src, address, hops, False, f"{current} receives the packet but does not forward it"
            )
        if answer.error is not None:
            hops.append(Hop(current, address, None, None, answer.error))
            return Trace(
                src, address, hops, False, f"no route to {address} at {current}: {answer.error}"
            )
        gateway, dev = answer.gateway, answer.dev
        tap = next((t for t in node.taps if t.name == dev), None)
        if tap is not None:
            who = "the guest" if address == topology.guest.ip else address
            via = f" via {gateway}" if gateway else ""
            hops.append(Hop(current, address, gateway, dev, f"into {dev}{via}"))
            return Trace(src, address, hops, True, f"handed to {who} on {current}'s {dev}{via}")
        next_address = gateway or address
        next_node = topology.node_by_address(next_address)
        hops.append(
            Hop(
                current,
                address,
                gateway,
                dev,
                f"next hop {next_node.name if next_node else next_address}",
            )
        )
        if next_node is None:
            where = "on the lab network" if dev == "eth0" else f"on {dev}"
            return Trace(
                src,
                address,
                hops,
                False,
                f"{current} sends it to {next_address} {where}, which is no node of the lab",
            )
        if gateway is None:  # on-link: the destination itself
            hops.append(Hop(next_node.name, address, None, None, "local address"))
            return Trace(src, address, hops, True, f"delivered to {next_node.name}")
        current = next_node.name
