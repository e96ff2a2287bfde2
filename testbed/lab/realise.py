"""The lab realised on Docker: its bridge network, export volume and node containers,
found again by name and label.  Nothing here knows the procedures; nothing here runs
inside a node (that is the agent's job)."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import docker
import docker.errors
import docker.models.containers
import docker.models.images
import docker.models.networks
import docker.models.volumes
import docker.types

from testbed import images, labels
from testbed.docker_client import create_container
from testbed.errors import UserError
from testbed.nfs import NfsServerSpec, create_nfs_server
from testbed.privileges import BOARD, Privileges
from testbed.topology import Node, Topology

LOG = logging.getLogger(__name__)

TOPOLOGY_LABEL = "io.gauss-testbed.topology"
NODE_LABEL = "io.gauss-testbed.node"
Container = docker.models.containers.Container
StepCallback = Callable[[str], None]


@dataclass(frozen=True)
class LabNames:
    """How a lab's Docker objects are named: ``NAME-net``, ``NAME-export``, ``NAME-NODE``."""

    lab: str

    @property
    def network(self) -> str:
        return f"{self.lab}-net"

    @property
    def volume(self) -> str:
        return f"{self.lab}-export"

    def container(self, node: str) -> str:
        return f"{self.lab}-{node}"

    def labels(self, kind: str, **extra: str) -> dict[str, str]:
        return labels.for_object(kind, lab=self.lab, **extra)


class DockerLab:
    """Finds and creates the Docker objects of one lab."""

    def __init__(self, client: docker.DockerClient, names: LabNames) -> None:
        self.client = client
        self.names = names

    # -- finding -------------------------------------------------------------------------
    def network(self) -> docker.models.networks.Network | None:
        found = self.client.networks.list(
            names=[self.names.network],
            filters=labels.project_filter(**{labels.LAB: self.names.lab}),
        )
        return next((n for n in found if n.name == self.names.network), None)

    def stored_topology(self) -> Topology | None:
        network = self.network()
        if network is None:
            return None
        stored = (network.attrs.get("Labels") or {}).get(TOPOLOGY_LABEL)
        if not stored:
            raise UserError(
                f"lab {self.names.lab!r} has no topology label",
                "recreate it: testbed down, then testbed up",
            )
        return Topology.from_dict(json.loads(stored), source=f"<lab {self.names.lab}>")

    def volume(self) -> docker.models.volumes.Volume | None:
        try:
            return self.client.volumes.get(self.names.volume)
        except docker.errors.NotFound:
            return None

    def container(self, node: str) -> Container | None:
        try:
            return self.client.containers.get(self.names.container(node))
        except docker.errors.NotFound:
            return None

    # -- creating ------------------------------------------------------------------------
    def check_subnet_free(self, topology: Topology) -> None:
        """Refuse, before creating anything, a subnet that overlaps a Docker network."""
        subnet = ipaddress.ip_network(topology.network.subnet)
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

    def create_network(self, topology: Topology, step: StepCallback) -> None:
        if self.network() is not None:
            return
        step(f"network {self.names.network} {topology.network.subnet}")
        ipam = docker.types.IPAMConfig(
            pool_configs=[
                docker.types.IPAMPool(
                    subnet=topology.network.subnet, gateway=topology.network.gateway
                )
            ]
        )
        try:
            self.client.networks.create(
                self.names.network,
                driver="bridge",
                ipam=ipam,
                check_duplicate=True,
                # nothing leaves the lab: no NAT towards the host's networks
                options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
                labels=self.names.labels(
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

    def create_volume(self) -> None:
        if self.volume() is None:
            self.client.volumes.create(self.names.volume, labels=self.names.labels("volume"))

    def _endpoint(self, address: str) -> dict[str, docker.types.EndpointConfig]:
        return {
            self.names.network: docker.types.EndpointConfig(
                self.client.api.api_version, ipv4_address=address
            )
        }

    def _ensure_running(
        self,
        node: Node,
        image: str,
        create: Callable[[], Container],
        step: StepCallback,
        privileges: Privileges | None = None,
    ) -> tuple[Container, bool]:
        """The node's container, running; True when it was created or (re)started now."""
        container = self.container(node.name)
        if (
            container is not None
            # a container always has an image (it cannot be removed from under it)
            and cast(docker.models.images.Image, container.image).id
            != self.client.images.get(image).id
        ):
            step(f"{node.name}: {image} was rebuilt, recreating {container.name}")
            container.remove(force=True)
            container = None
        if container is not None and privileges is not None:
            devices = container.attrs.get("HostConfig", {}).get("Devices") or []
            have = sorted(d.get("PathOnHost", "") for d in devices)
            if have != sorted(privileges.devices):
                step(
                    f"{node.name}: devices change ({', '.join(privileges.devices) or 'none'}), "
                    f"recreating {container.name}"
                )
                container.remove(force=True)
                container = None
        changed = container is None
        if container is None:
            step(f"{node.name}: creating {self.names.container(node.name)} at {node.address}")
            container = create()
        if container.status != "running":
            step(f"{node.name}: starting")
            container.start()
            container.reload()
            changed = True
        return container, changed

    def ensure_nfs(self, node: Node, step: StepCallback) -> tuple[Container, bool]:
        spec = NfsServerSpec(
            self.names.container(node.name),
            self.names.network,
            node.address,
            self.names.volume,
            self.names.labels("node", **{NODE_LABEL: node.name, labels.ROLE: "nfs"}),
        )
        return self._ensure_running(
            node, images.NFS_IMAGE, lambda: create_nfs_server(self.client, spec), step
        )

    def ensure_board(
        self, node: Node, image: str, step: StepCallback, privileges: Privileges = BOARD
    ) -> tuple[Container, bool]:
        def create() -> Container:
            return create_container(
                self.client,
                image,
                name=self.names.container(node.name),
                hostname=node.name,
                labels=self.names.labels("node", **{NODE_LABEL: node.name, labels.ROLE: "board"}),
                network=self.names.network,
                networking_config=self._endpoint(node.address),
                init=True,
                **privileges.container_kwargs(),
            )

        return self._ensure_running(node, image, create, step, privileges)
