"""Removing what the testbed created, found by its labels (containers, networks, volumes)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import cast

import docker
import docker.errors

from testbed import labels

LOG = logging.getLogger(__name__)


@dataclass
class Removed:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return asdict(self)

    def summary(self) -> str:
        if not (self.containers or self.networks or self.volumes):
            return "nothing to remove"
        return (
            f"removed {len(self.containers)} container(s), {len(self.networks)} "
            f"network(s), {len(self.volumes)} volume(s)"
        )


def remove_labelled(client: docker.DockerClient, lab: str | None = None) -> Removed:
    """Remove every testbed object (of one lab when ``lab`` is given).  Containers first,
    then networks and volumes, which containers hold on to."""
    match = {labels.LAB: lab} if lab else {}
    filters = labels.project_filter(**match)
    removed = Removed()
    for container in client.containers.list(all=True, filters=filters):
        try:
            container.remove(force=True, v=True)
            removed.containers.append(cast(str, container.name))  # listed: it has one
        except docker.errors.NotFound:
            pass
    for network in client.networks.list(filters=filters):
        try:
            network.remove()
            removed.networks.append(cast(str, network.name))  # listed: it has one
        except docker.errors.NotFound:
            pass
    for volume in client.volumes.list(filters=filters):
        try:
            volume.remove(force=True)
            removed.volumes.append(volume.name)
        except docker.errors.NotFound:
            pass
    LOG.info("%s", removed.summary())
    return removed
