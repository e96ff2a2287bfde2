"""Readiness waits, as named strategies."""

from __future__ import annotations

import time

import docker.models.containers

from testbed.errors import UserError


def wait_for_log(
    container: docker.models.containers.Container, text: str, timeout: float, what: str
) -> float:
    """Wait until the container's log contains ``text``; returns the seconds waited.
    Fails with the log's last line when the container stops or time runs out."""
    started = time.monotonic()
    needle = text.encode()
    while True:
        logs = container.logs()
        if needle in logs:
            return time.monotonic() - started
        container.reload()
        last = (logs.decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
        if container.status not in ("created", "running"):
            raise UserError(f"{what} stopped before it was ready ({container.status}): {last}")
        if time.monotonic() - started > timeout:
            raise UserError(f"{what} was not ready within {timeout:.0f} s: {last}")
        time.sleep(0.05)
