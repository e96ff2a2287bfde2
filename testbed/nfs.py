"""The NFS server container: nfs-ganesha exporting /srv/mnt from a volume."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import docker
import docker.models.containers
import docker.types

from testbed import images
from testbed.docker_client import create_container
from testbed.errors import UserError
from testbed.privileges import NFS, Privileges
from testbed.waiting import wait_for_log

LOG = logging.getLogger(__name__)

EXPORT_PATH = "/srv/mnt"
READY_LINE = "NFS SERVER INITIALIZED"


@dataclass(frozen=True)
class NfsServerSpec:
    name: str
    network: str
    address: str
    volume: str
    labels: dict[str, str]
    privileges: Privileges = NFS


def create_nfs_server(
    client: docker.DockerClient, spec: NfsServerSpec
) -> docker.models.containers.Container:
    """Create (not start) the server on ``spec.network`` at ``spec.address``."""
    return create_container(
        client,
        images.NFS_IMAGE,
        name=spec.name,
        hostname=spec.name,
        labels=spec.labels,
        volumes={spec.volume: {"bind": EXPORT_PATH, "mode": "rw"}},
        network=spec.network,
        networking_config={
            spec.network: docker.types.EndpointConfig(
                client.api.api_version, ipv4_address=spec.address
            )
        },
        **spec.privileges.container_kwargs(),
    )


# ganesha still says READY_LINE when the export failed; these lines mean it did.
EXPORT_FAILURES = (":EXPORT :CRIT", ":FSAL :CRIT", ":EXPORT :FATAL", ":FSAL :FATAL")


def wait_ready(container: docker.models.containers.Container, timeout: float = 30.0) -> float:
    """Wait until the server is initialized *and* its export works; returns the seconds."""
    seconds = wait_for_log(container, READY_LINE, timeout, f"NFS server {container.name}")
    for line in container.logs().decode(errors="replace").splitlines():
        if any(marker in line for marker in EXPORT_FAILURES):
            detail = line.split(" :", 1)[-1].strip() if " :" in line else line
            raise UserError(
                f"NFS server {container.name} started but cannot export {EXPORT_PATH}: {detail}"
            )
    LOG.info("%s serves NFS after %.2f s", container.name, seconds)
    return seconds
