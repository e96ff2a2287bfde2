"""Readiness of a container, by its log (the NFS server's), through the one wait helper."""

from __future__ import annotations

import time

import docker.models.containers

from testbed.errors import UserError
from testbed.wait import WaitAborted, WaitTimeout, wait_until


def wait_for_log(
    container: docker.models.containers.Container, text: str, timeout: float, what: str
) -> float:
    """Wait until the container's log contains ``text``; returns the seconds waited.
    Fails with the log's last line when the container stops or time runs out."""
    started = time.monotonic()
    needle = text.encode()
    seen = [b""]

    def logged() -> bool | None:
        seen[0] = container.logs()
        return True if needle in seen[0] else None

    def last() -> str:
        return (seen[0].decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]

    def gone() -> str | None:
        container.reload()
        return None if container.status in ("created", "running") else container.status

    try:
        wait_until(logged, what=f"{what} ready", timeout=timeout, last=last, gone=gone)
    except WaitAborted as exc:
        raise UserError(f"{what} stopped before it was ready ({exc.why}): {last()}") from None
    except WaitTimeout:
        raise UserError(f"{what} was not ready within {timeout:.0f} s: {last()}") from None
    return time.monotonic() - started
