"""The lab's lifecycle on the Docker SDK: create, find by label, configure, destroy.

A lab is one bridge network, one export volume and one container per topology node, all
labelled ``io.gauss-testbed.lab=NAME`` and named ``NAME-...`` so that labs can coexist
(with different subnets).  The topology a lab was made from is stored on its network, so
later commands (routes, trace, switch-route) need no topology file."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
import docker.errors
import docker.models.containers
import docker.types

from testbed import images, labels
from testbed.cleanup import Removed, remove_labelled
from testbed.errors import UserError
from testbed.nfs import NfsServerSpec, create_nfs_server, wait_ready
from testbed.node.__main__ import RESULT_PREFIX
from testbed.node.net import NetConfig, RouteSpec, TapSpec, parse_rate
from testbed.privileges import BOARD
from testbed.topology import Node, Topology
from testbed.topology import load as load_topology

LOG = logging.getLogger(__name__)

DEFAULT_LAB = "gauss"
TOPOLOGY_LABEL = "io.gauss-testbed.topology"
NODE_LABEL = "io.gauss-testbed.node"
_LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,20}$")

# on_step(text): a visible step of a long operation
StepCallback = Callable[[str], None]


def check_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name):
        raise UserError(
            f"bad lab name {name!r}",
            "use up to 21 lower-case letters, digits and dashes, starting with a letter",
        )
    return name


@dataclass
class NodeState:
    name: str
    role: str
    container: str
    state: str  # running, exited, ... or missing
    address: str
    image: str | None


@dataclass
class LabStatus:
    lab: str
    network: str | None
    subnet: str | None
    volume: str | None
    nodes: list[NodeState]

    @property
    def exists(self) -> bool:
        return self.network is not None or any(n.state != "missing" for n in self.nodes)

    @property
    def healthy(self) -> bool:
        return (
            self.network is not None
            and self.volume is not None
            and all(n.state == "running" for n in self.nodes)
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exists": self.exists, "healthy": self.healthy}


@dataclass
class NodeRoutes:
    node: str
    expected: list[dict[str, str | None]]
    actual: list[dict[str, str | None]]
    missing: list[dict[str, str | None]] = field(default_factory=list)
    unexpected: list[dict[str, str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.missing and not self.unexpected

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "routes": self.actual,
            "expected": self.expected,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "matches": self.matches,
            "notes": self.notes,
        }


@dataclass
class Hop:
    node: str
    dst: str
    gateway: str | None
    dev: str | None
    note: str = ""


@dataclass
class Trace:
    src: str
    dst: str
    hops: list[Hop]
    reached: bool
    end: str  # where the path ends, or where and why it breaks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Lab:
    """One lab: the Docker objects of a topology under a name."""

    def __init__(
        self,
        client: docker.DockerClient,
        name: str = DEFAULT_LAB,
        topology: Topology | None = None,
        suite: str = images.DEFAULT_SUITE,
    ) -> None:
        self.client = client
        self.name = check_lab_name(name)
        self.suite = suite
        self._topology = topology

    # -- names -------------------------------------------------------------------------
    @property
    def network_name(self) -> str:
        return f"{self.name}-net"

    @property
    def volume_name(self) -> str:
        return f"{self.name}-export"

    def container_name(self, node: str) -> str:
        return f"{self.name}-{node}"

    def _labels(self, kind: str, **extra: str) -> dict[str, str]:
        return labels.for_object(kind, lab=self.name, **extra)

    # -- the topology ------------------------------------------------------------------
    @property
    def topology(self) -> Topology:
        if self._topology is None:
            network = self._network()
            if network is None:
                raise UserError(f"lab {self.name!r} is not up", "start it with `testbed up`")
            stored = network.attrs.get("Labels", {}).get(TOPOLOGY_LABEL)
            if not stored:
                raise UserError(
                    f"lab {self.name!r} has no topology label",
                    "recreate it: testbed down, then testbed up",
                )
            self._topology = Topology.from_dict(json.loads(stored), source=f"<lab {self.name}>")
        return self._topology

    def _network(self) -> docker.models.networks.Network | None:
        found = self.client.networks.list(
            names=[self.network_name], filters=labels.project_filter(**{labels.LAB: self.name})
        )
        return next((n for n in found if n.name == self.network_name), None)

    def _volume(self) -> docker.models.volumes.Volume | None:
        try:
            return self.client.volumes.get(self.volume_name)
        except docker.errors.NotFound:
            return None

    def _container(self, node: str) -> docker.models.containers.Container | None:
        try:
            return self.client.containers.get(self.container_name(node))
        except docker.errors.NotFound:
            return None

    def container(self, node: str) -> docker.models.containers.Container:
        self.topology.node(node)  # a clear error for a name that is not in the lab
        found = self._container(node)
        if found is None or found.status != "running":
            raise UserError(
                f"node {node} of lab {self.name!r} is not running",
                "bring the lab up with `testbed up`",
            )
        return found

    # -- lifecycle ---------------------------------------------------------------------
    def status(self) -> LabStatus:
        network = self._network()
        volume = self._volume()
        nodes = []
        try:
            topology = self.topology
        except UserError:
            topology = None
        if topology is not None:
            for node in topology.nodes:
                c = self._container(node.name)
                nodes.append(
                    NodeState(
                        node.name,
                        node.role,
                        self.container_name(node.name),
                        c.status if c else "missing",
                        node.address,
                        (c.image.tags or [c.image.short_id])[0] if c else None,
                    )
                )
        return LabStatus(
            self.name,
            network.name if network else None,
            topology.network.subnet if topology else None,
            volume.name if volume else None,
            nodes,
        )

    def up(self, bandwidth: str | None = None, on_step: StepCallback | None = None) -> LabStatus:
        """Create what is missing, start what is stopped, (re)apply every node's network.
        A second ``up`` leaves one healthy lab.  If this call created the lab and fails,
        it removes everything again."""
        step = on_step or (lambda text: LOG.info("%s", text))
        if self._topology is None:  # the running lab's topology, else the seed's
            network = self._network()
            self._topology = self.topology if network is not None else load_topology()
        if bandwidth is not None:
            try:
                parse_rate(bandwidth)
            except ValueError as exc:
                raise UserError(f"--bandwidth: {exc}") from None
        board_image = images.board_image(self.suite)
        images.require_image(self.client, board_image)
        images.require_image(self.client, images.NFS_IMAGE)
        existing = self._network()
        created_here = existing is None
        if existing is not None:
            stored = existing.attrs.get("Labels", {}).get(TOPOLOGY_LABEL)
            if stored and Topology.from_dict(json.loads(stored)) != self._topology:
                raise UserError(
                    f"lab {self.name!r} is already up with another topology",
                    f"take it down first (testbed down --lab {self.name}) "
                    "or use another --lab name",
                )
        if created_here:
            self._check_subnet_free()
        try:
            self._create_network(step)
            self._create_volume()
            self._start_nfs(step)
            for node in self._topology.boards:
                self._start_board(node, board_image, step)
            for node in self._topology.nodes:
                self._configure(node, bandwidth, step)
        except BaseException:
            if created_here:
                step(f"lab {self.name}: failed, removing what was created")
                self.down()
            raise
        return self.status()

    def _create_network(self, step: StepCallback) -> None:
        if self._network() is not None:
            return
        topology = self.topology
        step(f"network {self.network_name} {topology.network.subnet}")
        ipam = docker.types.IPAMConfig(
            pool_configs=[
                docker.types.IPAMPool(
                    subnet=topology.network.subnet, gateway=topology.network.gateway
                )
            ]
        )
        try:
            self.client.networks.create(
                self.network_name,
                driver="bridge",
                ipam=ipam,
                check_duplicate=True,
                # nothing leaves the lab: no NAT towards the host's networks
                options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
                labels=self._labels(
                    "network",
                    **{TOPOLOGY_LABEL: json.dumps(topology.to_dict(), separators=(",", ":"))},
                ),
            )
        except docker.errors.APIError as exc:
            if "overlap" in str(exc).lower():
                raise UserError(
                    f"the lab network {topology.network.subnet} overlaps a network that "
                    "exists already (another lab, or a host network)",
                    "take the other lab down, or give this one another subnet with --topology",
                ) from None
            raise

    def _check_subnet_free(self) -> None:
        """Refuse, before creating anything, a subnet that overlaps a Docker network."""
        subnet = ipaddress.ip_network(self.topology.network.subnet)
        for network in self.client.networks.list():
            for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
                other = pool.get("Subnet")
                if other and ":" not in other and subnet.overlaps(ipaddress.ip_network(other)):
                    owner = (network.attrs.get("Labels") or {}).get(labels.LAB)
                    what = f"lab {owner!r}" if owner else f"Docker network {network.name!r}"
                    raise UserError(
                        f"the lab network {subnet} overlaps {other} of {what}",
                        f"take that down (testbed down --lab {owner})"
                        if owner
                        else "give this lab another subnet with --topology",
                    )

    def _create_volume(self) -> None:
        if self._volume() is None:
            self.client.volumes.create(self.volume_name, labels=self._labels("volume"))

    def _endpoint(self, address: str) -> dict[str, docker.types.EndpointConfig]:
        return {
            self.network_name: docker.types.EndpointConfig(
                self.client.api._version, ipv4_address=address
            )
        }

    def _ensure_running(
        self, node: Node, image: str, create: Callable[[], Any], step: StepCallback
    ) -> docker.models.containers.Container:
        container = self._container(node.name)
        if container is not None and container.image.id != self.client.images.get(image).id:
            step(f"{node.name}: {image} was rebuilt, recreating {container.name}")
            container.remove(force=True)
            container = None
        if container is None:
            step(f"{node.name}: creating {self.container_name(node.name)} at {node.address}")
            container = create()
        if container.status != "running":
            step(f"{node.name}: starting")
            container.start()
            container.reload()
        return container

    def _start_nfs(self, step: StepCallback) -> None:
        node = self.topology.nfs
        spec = NfsServerSpec(
            self.container_name(node.name),
            self.network_name,
            node.address,
            self.volume_name,
            self._labels("node", **{NODE_LABEL: node.name, labels.ROLE: "nfs"}),
        )
        container = self._ensure_running(
            node, images.NFS_IMAGE, lambda: create_nfs_server(self.client, spec), step
        )
        seconds = wait_ready(container)
        step(f"{node.name}: NFS server ready ({seconds:.1f} s)")

    def _start_board(self, node: Node, image: str, step: StepCallback) -> None:
        def create() -> docker.models.containers.Container:
            return self.client.containers.create(
                image,
                name=self.container_name(node.name),
                hostname=node.name,
                labels=self._labels("node", **{NODE_LABEL: node.name, labels.ROLE: "board"}),
                network=self.network_name,
                networking_config=self._endpoint(node.address),
                init=True,
                **BOARD.container_kwargs(),
            )

        self._ensure_running(node, image, create, step)

    def _configure(self, node: Node, bandwidth: str | None, step: StepCallback) -> None:
        config = NetConfig(
            taps=[TapSpec(t.name, t.address, t.mac) for t in node.taps],
            routes=[RouteSpec(r.dst, r.gateway or "") for r in node.routes],
        )
        args = ["net", "apply", "--config", json.dumps(config.to_dict())]
        if node.role == "board":
            args.append("--shape")
            if bandwidth:
                args += ["--bandwidth", bandwidth]
        result = self.agent(node.name, *args)
        shaping = f", {result['shaping']}" if result.get("shaping") else ""
        step(f"{node.name}: network applied ({len(result['actions'])} settings{shaping})")

    def down(self) -> Removed:
        return remove_labelled(self.client, lab=self.name)

    # -- talking to nodes ------------------------------------------------------------------
    def exec(self, node: str, command: list[str]) -> tuple[int, str]:
        code, output = self.container(node).exec_run(command)
        return int(code), output.decode(errors="replace")

    def agent(self, node: str, *args: str) -> dict[str, Any]:
        """Run ``python3 -m testbed.node ARGS`` in the node; its result as a dict."""
        code, (stdout, stderr) = self.container(node).exec_run(
            ["python3", "-m", "testbed.node", *args], demux=True
        )
        text = (stdout or b"").decode(errors="replace")
        for line in text.splitlines():
            if line.startswith(RESULT_PREFIX):
                result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
                if "error" in result and len(result) == 1:
                    raise UserError(f"{node}: {result['error']}")
                return result
        last = (stderr or b"").decode(errors="replace").strip().splitlines() or ["no output"]
        raise UserError(f"{node}: node agent failed ({code}): {last[-1]}")

    # -- route debugging -------------------------------------------------------------------
    def routes(self, node: str | None = None) -> list[NodeRoutes]:
        topology = self.topology
        nodes = [topology.node(node)] if node else list(topology.nodes)
        found = []
        guest_route = f"{topology.guest.ip}/32"
        board_addresses = {b.address: b.name for b in topology.boards}
        for n in nodes:
            actual = self.agent(n.name, "net", "routes")["routes"]
            expected = [r.to_dict() for r in topology.expected_routes(n)]
            notes = []
            if n.role == "nfs":
                # after a migration the host route to the guest points at the other board
                # (switch-route): that is the procedure, not a difference
                for route in actual:
                    planned = next((r for r in expected if r["dst"] == guest_route), None)
                    if (
                        route["dst"] == guest_route
                        and planned is not None
                        and route["gateway"] != planned["gateway"]
                        and route["gateway"] in board_addresses
                    ):
                        expected = [route if r is planned else r for r in expected]
                        notes.append(
                            f"{guest_route} switched to {board_addresses[str(route['gateway'])]}"
                        )

            def key(r: dict[str, str | None]) -> tuple[str | None, ...]:
                return (r["dst"], r["gateway"], r["dev"])

            actual_keys = {key(r) for r in actual}
            expected_keys = {key(r) for r in expected}
            found.append(
                NodeRoutes(
                    n.name,
                    expected,
                    actual,
                    missing=[r for r in expected if key(r) not in actual_keys],
                    unexpected=[r for r in actual if key(r) not in expected_keys],
                    notes=notes,
                )
            )
        return found

    def resolve(self, target: str) -> str:
        """A node name, ``guest``, or an IPv4 address -> an address."""
        topology = self.topology
        if target == "guest":
            return topology.guest.ip
        if target in topology.node_names:
            return topology.node(target).address
        if re.match(r"^\d+\.\d+\.\d+\.\d+$", target):
            return target
        raise UserError(
            f"unknown destination {target!r}",
            f"use a node ({', '.join(topology.node_names)}), guest, or an address",
        )

    def trace(self, src: str, dst: str) -> Trace:
        """Follow ``ip route get`` node by node until the path reaches its destination
        (a node, or a tap towards the guest), or breaks."""
        topology = self.topology
        topology.node(src)
        address = self.resolve(dst)
        hops: list[Hop] = []
        current = src
        visited: set[str] = set()
        while True:
            if current in visited:
                return Trace(src, address, hops, False, f"routing loop: back at {current}")
            visited.add(current)
            node = topology.node(current)
            answer = self.agent(current, "net", "route-get", address)
            if hops and not answer.get("forwarding"):
                hops.append(Hop(current, address, None, None, "does not forward"))
                return Trace(
                    src,
                    address,
                    hops,
                    False,
                    f"{current} receives the packet but does not forward it",
                )
            if "error" in answer:
                hops.append(Hop(current, address, None, None, answer["error"]))
                return Trace(
                    src,
                    address,
                    hops,
                    False,
                    f"no route to {address} at {current}: {answer['error']}",
                )
            gateway, dev = answer.get("gateway"), answer.get("dev")
            if answer.get("type") == "local" or node.address == address:
                hops.append(Hop(current, address, None, dev, "local address"))
                return Trace(src, address, hops, True, f"delivered to {current}")
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

    def ping(self, src: str, dst: str, count: int = 3) -> tuple[int, str]:
        address = self.resolve(dst)
        return self.exec(src, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", address])

    def switch_route(self, via: str) -> dict[str, Any]:
        """Point the NFS server's host route to the guest at board ``via`` (atomic
        ``ip route replace``), as the seed does after a migration."""
        topology = self.topology
        board = topology.node(via)
        if board.role != "board":
            raise UserError(
                f"{via} is not a board", f"use one of {', '.join(b.name for b in topology.boards)}"
            )
        dst = f"{topology.guest.ip}/32"
        started = time.perf_counter()
        result = self.agent(topology.nfs.name, "net", "replace-route", dst, board.address)
        return {
            "node": topology.nfs.name,
            "dst": dst,
            "via": board.name,
            "gateway": board.address,
            "kernel_ms": round(result["seconds"] * 1000, 3),
            "wall_ms": round((time.perf_counter() - started) * 1000, 1),
        }


def find_labs(client: docker.DockerClient) -> list[str]:
    names = {
        n.attrs.get("Labels", {}).get(labels.LAB)
        for n in client.networks.list(filters=labels.project_filter(**{labels.KIND: "network"}))
    }
    return sorted(name for name in names if name)
