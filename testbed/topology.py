"""The lab as data: network, nodes, taps, routes and the guest, loaded from a TOML file.

This is the one place that knows the topology; everything else asks it.  A malformed
file is one :class:`TopologyError` naming the file, the place and the problem."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from testbed.errors import UserError

ROLES = ("board", "nfs")
LAB_DEVICE = "eth0"  # the lab network inside every node (the only network it has)
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_IFNAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")


class TopologyError(UserError):
    def __init__(self, source: str, place: str, problem: str) -> None:
        super().__init__(
            f"{source}: {place}: {problem}" if place else f"{source}: {problem}",
            "fix the topology file",
        )


@dataclass(frozen=True)
class Route:
    """A routing-table entry: ``dst`` is ``default`` or a prefix; ``dev`` may be None."""

    dst: str
    gateway: str | None = None
    dev: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"dst": self.dst, "gateway": self.gateway, "dev": self.dev}


@dataclass(frozen=True)
class Tap:
    name: str
    address: str  # CIDR, e.g. 192.168.2.1/24
    mac: str

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def subnet(self) -> str:
        return str(ipaddress.ip_interface(self.address).network)


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    address: str
    forwarding: bool = False
    routes: tuple[Route, ...] = ()
    taps: tuple[Tap, ...] = ()


@dataclass(frozen=True)
class Guest:
    address: str  # CIDR, e.g. 192.168.2.100/24
    gateway: str
    mac: str

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True)
class Network:
    subnet: str
    gateway: str  # the Docker bridge's own address (the host side); no node uses it


@dataclass(frozen=True)
class Topology:
    network: Network
    guest: Guest
    nodes: tuple[Node, ...]
    source: str = field(default="<built-in seed topology>", compare=False)

    # -- questions the rest of the code asks -------------------------------------------
    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise UserError(
            f"no node {name!r} in the topology", f"use one of {', '.join(self.node_names)}"
        )

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.nodes]

    @property
    def boards(self) -> list[Node]:
        return [node for node in self.nodes if node.role == "board"]

    @property
    def nfs(self) -> Node:
        return next(node for node in self.nodes if node.role == "nfs")

    def node_by_address(self, address: str) -> Node | None:
        return next((node for node in self.nodes if node.address == address), None)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.network.subnet).prefixlen

    def expected_routes(self, node: Node) -> list[Route]:
        """The node's main routing table as the topology says it must be: the connected
        routes of its addresses, then its static routes."""
        routes = [Route(self.network.subnet, None, LAB_DEVICE)]
        routes += [Route(tap.subnet, None, tap.name) for tap in node.taps]
        routes += [
            Route(r.dst, r.gateway, r.dev or self._device_towards(node, r.gateway))
            for r in node.routes
        ]
        return routes

    def _device_towards(self, node: Node, gateway: str | None) -> str:
        if gateway is not None:
            for tap in node.taps:
                if ipaddress.ip_address(gateway) in ipaddress.ip_network(tap.subnet):
                    return tap.name
        return LAB_DEVICE

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        for node in data["nodes"]:
            node["routes"] = [
                {"dst": r["dst"], "via": r["gateway"], **({"dev": r["dev"]} if r["dev"] else {})}
                for r in node["routes"]
            ]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Topology:
        return _Parser(source).topology(data)


def load(path: str | Path | None = None) -> Topology:
    """The topology in ``path``, or the seed's when ``path`` is None."""
    if path is None:
        text = resources.files("testbed").joinpath("data/seed.toml").read_text()
        source = "<built-in seed topology>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TopologyError(source, "", f"cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise TopologyError(
                source, "", f"not UTF-8 text (byte {exc.start}: {exc.reason})"
            ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(source, "", f"not valid TOML: {exc}") from None
    return _Parser(source).topology(data)


class _Parser:
    """Validates raw TOML data into a Topology, naming the place of every problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, place: str, problem: str) -> TopologyError:
        return TopologyError(self.source, place, problem)

    def table(
        self, data: Any, place: str, required: set[str], optional: set[str]
    ) -> dict[str, object]:
        if not isinstance(data, dict):
            raise self.fail(place, "must be a table")
        missing = sorted(required - data.keys())
        if missing:
            raise self.fail(place, f"missing key {missing[0]!r}")
        unknown = sorted(data.keys() - required - optional)
        if unknown:
            raise self.fail(
                place,
                f"unknown key {unknown[0]!r} (known: {', '.join(sorted(required | optional))})",
            )
        return data

    def string(self, data: dict[str, object], key: str, place: str) -> str:
        value = data[key]
        if not isinstance(value, str):
            raise self.fail(f"{place}.{key}", f"must be a string, not {value!r}")
        return value

    def ip(self, data: dict[str, object], key: str, place: str) -> str:
        value = self.string(data, key, place)
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise self.fail(f"{place}.{key}", f"{value!r} is not an IPv4 address") from None

    def interface(self, data: dict[str, object], key: str, place: str) -> str:
        value = self.string(data, key, place)
        try:
            iface = ipaddress.IPv4Interface(value)
        except ValueError:
            raise self.fail(f"{place}.{key}", f"{value!r} is not ADDRESS/PREFIXLEN") from None
        if "/" not in value:
            raise self.fail(f"{place}.{key}", f"{value!r} needs a prefix length")
        return str(iface)

    def mac(self, data: dict[str, object], key: str, place: str) -> str:
        value = self.string(data, key, place).lower()
        if not _MAC.match(value):
            raise self.fail(f"{place}.{key}", f"{value!r} is not a MAC address")
        if int(value[:2], 16) & 1:
            raise self.fail(f"{place}.{key}", f"{value!r} is a multicast MAC address")
        return value

    def topology(self, data: Any) -> Topology:
        top = self.table(data, "top level", {"network", "guest", "nodes"}, set())
        network = self.network(top["network"])
        guest = self.guest(top["guest"])
        raw_nodes = top["nodes"]
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise self.fail("nodes", "must be a non-empty array of tables ([[nodes]])")
        nodes = tuple(self.node(raw, f"nodes[{i}]", network) for i, raw in enumerate(raw_nodes))
        self.check_lab(nodes, network, guest)
        return Topology(network, guest, nodes, self.source)

    def network(self, data: Any) -> Network:
        net = self.table(data, "network", {"subnet"}, {"gateway"})
        value = self.string(net, "subnet", "network")
        try:
            subnet = ipaddress.IPv4Network(value)
        except ValueError:
            raise self.fail("network.subnet", f"{value!r} is not an IPv4 prefix") from None
        if subnet.prefixlen > 29:
            raise self.fail("network.subnet", f"{value} is too small for a lab")
        gateway = (
            self.ip(net, "gateway", "network") if "gateway" in net else str(next(subnet.hosts()))
        )
        if ipaddress.IPv4Address(gateway) not in subnet:
            raise self.fail("network.gateway", f"{gateway} is not in {subnet}")
        return Network(str(subnet), gateway)

    def guest(self, data: Any) -> Guest:
        g = self.table(data, "guest", {"address", "gateway", "mac"}, set())
        guest = Guest(
            self.interface(g, "address", "guest"),
            self.ip(g, "gateway", "guest"),
            self.mac(g, "mac", "guest"),
        )
        if ipaddress.ip_address(guest.gateway) not in ipaddress.ip_interface(guest.address).network:
            raise self.fail(
                "guest.gateway",
                f"{guest.gateway} is not in the guest's subnet "
                f"{ipaddress.ip_interface(guest.address).network}",
            )
        return guest

    def node(self, data: Any, place: str, network: Network) -> Node:
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            place = f"{place} ({data['name']})"
        n = self.table(data, place, {"name", "role", "address"}, {"forwarding", "routes", "taps"})
        name = self.string(n, "name", place)
        if not _NAME.match(name):
            raise self.fail(
                f"{place}.name",
                f"{name!r} must be lower-case letters, digits and dashes, starting with a letter",
            )
        role = self.string(n, "role", place)
        if role not in ROLES:
            raise self.fail(f"{place}.role", f"unknown role {role!r} (use {' or '.join(ROLES)})")
        address = self.ip(n, "address", place)
        subnet = ipaddress.IPv4Network(network.subnet)
        if ipaddress.IPv4Address(address) not in subnet:
            raise self.fail(f"{place}.address", f"{address} is not in the lab network {subnet}")
        if address in (str(subnet.network_address), str(subnet.broadcast_address)):
            raise self.fail(f"{place}.address", f"{address} is not a host address of {subnet}")
        if address == network.gateway:
            raise self.fail(f"{place}.address", f"{address} is the Docker bridge's own address")
        forwarding = n.get("forwarding", False)
        if not isinstance(forwarding, bool):
            raise self.fail(f"{place}.forwarding", "must be true or false")
        taps = tuple(
            self.tap(raw, f"{place}.taps[{i}]")
            for i, raw in enumerate(self.array(n.get("taps", []), f"{place}.taps"))
        )
        if taps and role != "board":
            raise self.fail(f"{place}.taps", "only boards have taps")
        connected = [subnet] + [ipaddress.ip_network(t.subnet) for t in taps]
        routes = tuple(
            self.route(raw, f"{place}.routes[{i}]", connected)
            for i, raw in enumerate(self.array(n.get("routes", []), f"{place}.routes"))
        )
        return Node(name, role, address, forwarding, routes, taps)

    def array(self, value: Any, place: str) -> list[object]:
        if not isinstance(value, list):
            raise self.fail(place, "must be an array")
        return value

    def tap(self, data: Any, place: str) -> Tap:
        t = self.table(data, place, {"name", "address", "mac"}, set())
        name = self.string(t, "name", place)
        if not _IFNAME.match(name) or name == LAB_DEVICE:
            raise self.fail(f"{place}.name", f"{name!r} is not a usable interface name")
        return Tap(name, self.interface(t, "address", place), self.mac(t, "mac", place))

    def route(
        self,
        data: Any,
        place: str,
        connected: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    ) -> Route:
        r = self.table(data, place, {"dst", "via"}, {"dev"})
        dst = self.string(r, "dst", place)
        if dst != "default":
            try:
                dst = str(ipaddress.IPv4Network(dst))
            except ValueError:
                raise self.fail(
                    f"{place}.dst", f"{dst!r} is not 'default' or an IPv4 prefix"
                ) from None
        via = self.ip(r, "via", place)
        if not any(ipaddress.IPv4Address(via) in net for net in connected):
            raise self.fail(f"{place}.via", f"gateway {via} is not on a network this node is on")
        dev = self.string(r, "dev", place) if "dev" in r else None
        return Route(dst, via, dev)

    def check_lab(self, nodes: tuple[Node, ...], network: Network, guest: Guest) -> None:
        seen: dict[str, str] = {}
        for i, node in enumerate(nodes):
            place = f"nodes[{i}] ({node.name})"
            if node.name in seen:
                raise self.fail(f"{place}.name", f"duplicate node name {node.name!r}")
            seen[node.name] = node.address
            if list(seen.values()).count(node.address) > 1:
                raise self.fail(f"{place}.address", f"{node.address} is used by another node")
        addresses = {node.address for node in nodes} | {guest.ip}
        for i, node in enumerate(nodes):
            for j, route in enumerate(node.routes):
                if route.gateway not in addresses:
                    raise self.fail(
                        f"nodes[{i}] ({node.name}).routes[{j}].via",
                        f"gateway {route.gateway} is no node of the lab (nothing may be routed "
                        "out of the lab)",
                    )
        roles = [node.role for node in nodes]
        if roles.count("nfs") != 1:
            raise self.fail(
                "nodes", f"needs exactly one node with role 'nfs', found {roles.count('nfs')}"
            )
        if roles.count("board") < 2:
            raise self.fail("nodes", "needs at least two boards (migration source and destination)")
        for i, node in enumerate(nodes):
            if node.role == "board" and guest.gateway not in [t.ip for t in node.taps]:
                raise self.fail(
                    f"nodes[{i}] ({node.name}).taps",
                    f"no tap has the guest's gateway address {guest.gateway}",
                )
