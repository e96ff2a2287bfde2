"""The one place that connects to the Docker engine (works with Docker Desktop too)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

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


LAUNCH_GRACE_S = 5.0  # how long a started thread may take to run, on a very busy machine


def _wait_through_ctrl_c(event: threading.Event, timeout: float) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds; further Ctrl-Cs do not cut it short."""
    deadline = time.monotonic() + timeout
    while not event.is_set() and (left := deadline - time.monotonic()) > 0:
        try:
            event.wait(left)
        except KeyboardInterrupt:
            pass
    return event.is_set()


def create_container(client: docker.DockerClient, *args: Any, **kwargs: Any) -> Container:
    """``client.containers.create`` that a Ctrl-C cannot cut in half.

    A KeyboardInterrupt raised while the request is in flight would leave the engine to
    create a container nobody holds (and nobody removes).  So the request runs in a thread
    to its answer; a Ctrl-C meanwhile waits for that answer (further Ctrl-Cs too: it takes
    milliseconds), removes the container if one was made, and then goes on."""
    made: list[Container] = []
    failed: list[BaseException] = []
    launched = threading.Event()  # the request's thread runs
    answered = threading.Event()  # not Thread.join: a join that a Ctrl-C interrupts can
    # mark a running thread stopped (CPython 3.11, bpo-45274)

    def request() -> None:
        launched.set()
        try:
            made.append(client.containers.create(*args, **kwargs))
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)
        finally:
            answered.set()

    interrupted: KeyboardInterrupt | None = None
    try:
        threading.Thread(target=request, name="docker create", daemon=True).start()
    except KeyboardInterrupt as exc:
        # It may come before the thread was started, or while start() waits for it to
        # run: a thread that was started says so within milliseconds.
        interrupted = exc
        if not _wait_through_ctrl_c(launched, LAUNCH_GRACE_S):
            raise  # never started: nothing was asked of the engine
    while not answered.is_set():
        try:
            answered.wait()
        except KeyboardInterrupt as exc:  # the first one is raised once the answer is in
            interrupted = interrupted or exc
    if interrupted is not None:
        for container in made:
            LOG.info("Ctrl-C during its creation: removing %s", container.name)
            container.remove(force=True)
        raise interrupted
    if failed:
        raise failed[0]
    return made[0]
