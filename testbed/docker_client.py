"""The one place that connects to the Docker engine (works with Docker Desktop too)."""

from __future__ import annotations

import logging

import docker
import docker.errors

from testbed.errors import UserError

LOG = logging.getLogger(__name__)


def connect() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket).

    Raises UserError naming the problem and the fix when no engine answers."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise UserError(
            f"Docker is not running or not reachable ({_short(exc)})",
            "start the Docker engine (e.g. `dockerd &` or `systemctl start docker`) "
            "or set DOCKER_HOST",
        ) from None
    return client


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
