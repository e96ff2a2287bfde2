"""Removing what the testbed created, found by its labels (containers, networks, volumes)."""

from __future__ import annotations

import logging
import time
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


def remove_labelled(
    client: docker.DockerClient, lab: str | None = None, settle_s: float = 15.0
) -> Removed:
    """Remove every testbed object (of one lab when ``lab`` is given).  Containers first,
    then networks and volumes, which containers hold on to.

    A Ctrl-C can land while a create request is already with dockerd: the container it
    makes appears after the first listing and holds the volume and the network.  So a
    removal that dockerd refuses as "in use" lists the containers again, for up to
    ``settle_s`` seconds, before it gives up with dockerd's error."""
    match = {labels.LAB: lab} if lab else {}
    filters = labels.project_filter(**match)
    removed = Removed()
    deadline = time.monotonic() + settle_s
    while True:
        busy = _remove_round(client, filters, removed)
        if busy is None:
            break
        if time.monotonic() >= deadline:
            raise busy
        LOG.info("removal refused (%s): listing the containers again", busy.explanation)
        time.sleep(0.2)
    LOG.info("%s", removed.summary())
    return removed


def _remove_round(
    client: docker.DockerClient, filters: dict[str, str | list[str] | bool], removed: Removed
) -> docker.errors.APIError | None:
    """One pass over containers, networks and volumes; the first "in use" refusal, if any."""
    busy: docker.errors.APIError | None = None
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        try:
            container.remove(force=True, v=True)
            removed.containers.append(cast(str, container.name))  # listed: it has one
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal of it already in progress
                raise
            busy = busy or exc
    for network in client.networks.list(filters=filters):
        try:
            network.remove()
            removed.networks.append(cast(str, network.name))  # listed: it has one
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code not in (403, 409):  # has active endpoints
                raise
            busy = busy or exc
    for volume in client.volumes.list(filters=filters):
        try:
            volume.remove(force=True)
            removed.volumes.append(volume.name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # volume is in use
                raise
            busy = busy or exc
    return busy
