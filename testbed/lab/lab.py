"""One lab: the topology realised on Docker, its nodes configured and driven through their
agents.  The facade the CLI and the scenarios use.

A lab is one bridge network, one export volume and one container per topology node, all
labelled ``io.gauss-testbed.lab=NAME`` and named ``NAME-...`` so that labs can coexist
(with different subnets).  The topology a lab was made from is stored on its network, so
later commands (routes, trace, switch-route, guest, migrate) need no topology file."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar, cast

import docker
import docker.errors

from testbed import futures, images
from testbed.cleanup import Removed, remove_labelled
from testbed.config import DEFAULT_LAB, check_lab_name
from testbed.errors import UserError
from testbed.lab.agent_client import AgentClient, EventCallback, NodeLost
from testbed.lab.realise import Container, DockerLab, LabNames
from testbed.lab.routes import NodeRoutes, RouteSource, Trace, compare, trace
from testbed.nfs import wait_ready
from testbed.privileges import BOARD, Privileges
from testbed.protocol import (
    GetRoutes,
    NetApply,
    NetConfig,
    Request,
    RouteEntry,
    RouteGet,
    RouteLookup,
    RouteReplace,
    RouteSpec,
    RouteSwitched,
    SessionEnd,
    TapSpec,
)
from testbed.topology import Node, Topology
from testbed.topology import load as load_topology

LOG = logging.getLogger(__name__)

R = TypeVar("R")
StepCallback = Callable[[str], None]


@dataclass(frozen=True)
class NodeState:
    name: str
    role: str
    container: str
    state: str  # running, exited, paused, ... or missing
    address: str
    image: str | None
    exit_code: int | None = None


@dataclass(frozen=True)
class LabStatus:
    lab: str
    network: str | None
    subnet: str | None
    volume: str | None
    nodes: list[NodeState]
    exists: bool
    healthy: bool


class Lab:
    """One lab: the Docker objects of a topology under a name, and its nodes' agents."""

    def __init__(
        self,
        client: docker.DockerClient,
        name: str = DEFAULT_LAB,
        topology: Topology | None = None,
        suite: str = images.DEFAULT_SUITE,
        who: str | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.cancel = cancel  # set: this object's agent calls raise Cancelled
        self.name = check_lab_name(name)
        self.names = LabNames(self.name)
        self.docker = DockerLab(client, self.names)
        self.suite = suite
        self.who = who or f"{os.path.basename(sys.argv[0])} (pid {os.getpid()})"
        self._topology = topology
        self._agents: dict[str, AgentClient] = {}
        self.created = False  # this object's up() created the lab
        self.removed: Removed | None = None  # what up() removed again when it failed

    # -- the topology ------------------------------------------------------------------------
    @property
    def topology(self) -> Topology:
        if self._topology is None:
            stored = self.docker.stored_topology()
            if stored is None:
                raise UserError(f"lab {self.name!r} is not up", "start it with `testbed up`")
            self._topology = stored
        return self._topology

    def container_name(self, node: str) -> str:
        return self.names.container(node)

    # -- lifecycle -----------------------------------------------------------------------------
    def status(self) -> LabStatus:
        network = self.docker.network()
        volume = self.docker.volume()
        nodes = []
        try:
            topology: Topology | None = self.topology
        except UserError:
            topology = None
        if topology is not None:
            for node in topology.nodes:
                nodes.append(self.node_state(node))
        exists = network is not None or any(n.state != "missing" for n in nodes)
        healthy = (
            network is not None and volume is not None and all(n.state == "running" for n in nodes)
        )
        return LabStatus(
            self.name,
            network.name if network else None,
            topology.network.subnet if topology else None,
            volume.name if volume else None,
            nodes,
            exists,
            healthy,
        )

    def node_state(self, node: Node) -> NodeState:
        c = self.docker.container(node.name)
        if c is None:
            return NodeState(
                node.name, node.role, self.container_name(node.name), "missing", node.address, None
            )
        state = c.attrs.get("State", {})
        return NodeState(
            node.name,
            node.role,
            c.name or "",
            c.status,
            node.address,
            (c.image.tags or [c.image.short_id])[0] if c.image else None,
            int(state["ExitCode"]) if c.status == "exited" and "ExitCode" in state else None,
        )

    def up(
        self,
        bandwidth: str | None = None,
        on_step: StepCallback | None = None,
        board_privileges: Privileges = BOARD,
    ) -> LabStatus:
        """Create what is missing, start what is stopped, (re)apply every node's network.
        A second ``up`` leaves one healthy lab.  If this call created the lab and fails,
        it removes everything again."""
        step = on_step or (lambda text: LOG.info("%s", text))
        if self._topology is None:  # the running lab's topology, else the seed's
            self._topology = self.docker.stored_topology() or load_topology()
        topology = self._topology
        board_image = images.board_image(self.suite)
        images.require_image(self.client, board_image)
        images.require_image(self.client, images.NFS_IMAGE)
        existing = self.docker.stored_topology()
        created_here = existing is None
        if existing is not None and existing != topology:
            raise UserError(
                f"lab {self.name!r} is already up with another topology",
                f"take it down first (testbed down --lab {self.name}) or use another --lab name",
            )
        if created_here:
            self.docker.check_subnet_free(topology)
            self.created = True  # from here on, what exists of it is this object's doing
        try:
            self.docker.create_network(topology, step)
            self.docker.create_volume()
            nfs, changed = self.docker.ensure_nfs(topology.nfs, step)
            restarted = {topology.nfs.name} if changed else set()
            seconds = wait_ready(nfs)
            step(f"{topology.nfs.name}: NFS server ready ({seconds:.1f} s)")
            for node in topology.boards:
                _, changed = self.docker.ensure_board(node, board_image, step, board_privileges)
                if changed:
                    restarted.add(node.name)
            for node in topology.nodes:
                if node.name in restarted:
                    self._forget_agent(node.name)  # a new container has a new agent
            # each node's agent starts (or answers) and applies its network at once: the
            # agents' start-up, about 0.6 s each under docker exec, overlaps
            with ThreadPoolExecutor(len(topology.nodes)) as pool:
                configured = [
                    pool.submit(self._configure, node, bandwidth, step) for node in topology.nodes
                ]
                for future in configured:
                    futures.result(future)
        except BaseException:
            if created_here:
                step(f"lab {self.name}: failed, removing what was created")
                self.removed = self.down()
            raise
        self.created = self.created or created_here
        return self.status()

    def require_up(self) -> LabStatus:
        """The lab as it is, refused unless it is up and healthy (nothing is changed)."""
        status = self.status()
        if not status.healthy:
            raise UserError(
                f"lab {self.name!r} is not up and healthy",
                f"bring it up with `testbed up --lab {self.name}`",
            )
        return status

    def _configure(self, node: Node, bandwidth: str | None, step: StepCallback) -> None:
        config = NetConfig(
            taps=[TapSpec(t.name, t.address, t.mac) for t in node.taps],
            routes=[RouteSpec(r.dst, r.gateway or "") for r in node.routes],
        )
        board = node.role == "board"
        result = self.call(node.name, NetApply(config, shape=board, bandwidth=bandwidth))
        shaping = f", {result.shaping}" if result.shaping else ""
        step(f"{node.name}: network applied ({len(result.actions)} settings{shaping})")

    def down(self) -> Removed:
        for node in list(self._agents):
            self._forget_agent(node)
        removed = remove_labelled(self.client, lab=self.name)
        if self.removed is not None and not (
            removed.containers or removed.networks or removed.volumes
        ):
            removed = self.removed  # up() had removed it already, when it failed
        self.removed = removed
        return removed

    # -- nodes and their agents -------------------------------------------------------------
    def container(self, node: str) -> Container:
        self.topology.node(node)  # a clear error for a name that is not in the lab
        found = self.docker.container(node)
        if found is None or found.status != "running":
            raise UserError(
                f"node {node} of lab {self.name!r} is not running",
                "bring the lab up with `testbed up`",
            )
        return found

    def agent(self, node: str) -> AgentClient:
        client = self._agents.get(node)
        if client is None or client.lost is not None:
            try:
                container = self.container(node)
            except UserError:
                if client is not None:
                    # this run's agent was lost with its node: a fault of the procedure
                    # (its verdict says so), not a lab to bring up
                    raise NodeLost(node, client.lost or "the node stopped") from None
                raise
            client = AgentClient(self.client, container.id or "", node, self.who, self.cancel)
            try:
                client.connect()
            except NodeLost as exc:
                raise UserError(
                    f"cannot reach the agent of {node}: {exc.reason}",
                    "see `testbed exec NODE -- cat /run/testbed/agent.log`",
                ) from None
            self._agents[node] = client
        return client

    def call(
        self,
        node: str,
        request: Request[R],
        on_event: EventCallback | None = None,
        timeout: float | None = None,
    ) -> R:
        return self.agent(node).call(request, on_event, timeout)

    def _forget_agent(self, node: str) -> None:
        client = self._agents.pop(node, None)
        if client is not None:
            client.close(end_session=False)

    def close(self) -> dict[str, SessionEnd | None]:
        """End every agent session: each agent stops what this process started there and
        did not release.  Returns what each stopped (None: the node was unreachable)."""
        ended = {}
        for node, client in list(self._agents.items()):
            ended[node] = client.close(end_session=True)
        self._agents.clear()
        return ended

    def node_fault(self, node: str) -> str:
        """What happened to a node whose agent stream broke, for a verdict."""
        c = self.docker.container(node)
        if c is None:
            return "container removed"
        c.reload()
        state = c.attrs.get("State", {})
        if c.status == "exited":
            return f"container exited {state.get('ExitCode')}"
        if c.status == "paused":
            return "container paused"
        if state.get("OOMKilled"):
            return "container killed for lack of memory"
        return f"container {c.status}, its agent is gone"

    def exec(self, node: str, command: list[str]) -> tuple[int, str]:
        code, output = self.container(node).exec_run(command)
        # neither streamed nor detached: the exit code, and the output as one bytes object
        return int(cast(int, code)), cast(bytes, output).decode(errors="replace")

    # -- route debugging -------------------------------------------------------------------
    def _route_source(self) -> RouteSource:
        lab = self

        class _Agents:
            def routes(self, node: str) -> list[RouteEntry]:
                return lab.call(node, GetRoutes()).routes

            def route_get(self, node: str, dst: str) -> RouteLookup:
                return lab.call(node, RouteGet(dst))

        return _Agents()

    def routes(self, node: str | None = None) -> list[NodeRoutes]:
        topology = self.topology
        nodes = [topology.node(node)] if node else list(topology.nodes)
        source = self._route_source()
        return [compare(topology, n.name, source.routes(n.name)) for n in nodes]

    def trace(self, src: str, dst: str) -> Trace:
        return trace(self.topology, self._route_source(), src, dst)

    def switch_route(self, via: str, probe: bool = False, timeout: float = 10.0) -> RouteSwitched:
        """Point the NFS server's host route to the guest at board ``via`` (atomic
        ``ip route replace``), as the seed does after a migration; with ``probe``, send
        echo requests to the guest right after, until the first reply."""
        topology = self.topology
        board = topology.node(via)
        if board.role != "board":
            raise UserError(
                f"{via} is not a board", f"use one of {', '.join(b.name for b in topology.boards)}"
            )
        return self.call(
            topology.nfs.name,
            RouteReplace(
                f"{topology.guest.ip}/32",
                board.address,
                probe=topology.guest.ip if probe else None,
                probe_timeout=timeout,
            ),
        )

    def board_of_guest_route(self) -> str | None:
        """The board the NFS server's host route to the guest points at now."""
        topology = self.topology
        answer = self.call(topology.nfs.name, RouteGet(topology.guest.ip))
        node = topology.node_by_address(answer.gateway) if answer.gateway else None
        return node.name if node else None


def find_labs(client: docker.DockerClient) -> list[str]:
    from testbed import labels

    names = {
        (n.attrs.get("Labels") or {}).get(labels.LAB)
        for n in client.networks.list(filters=labels.project_filter(**{labels.KIND: "network"}))
    }
    return sorted(name for name in names if name)
