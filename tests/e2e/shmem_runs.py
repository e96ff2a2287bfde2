"""`testbed run shmem --json` as the end-to-end modules run it, and what they read from it."""

from __future__ import annotations

import json
from typing import Any

import docker

from testbed import labels
from tests.conftest import run_cli


def run_shmem(lab: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, the JSON result, standard error); the guest program writes for 6 s
    unless ``args`` say otherwise."""
    proc = run_cli("run", "shmem", "--lab", lab, "--json", "--duration", "6", *args, timeout=600)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def failing(result: dict[str, Any]) -> set[str]:
    return {c["check"] for c in result["checks"] if c["outcome"] == "fail"}


def qemu_major(client: docker.DockerClient, tag: str) -> int:
    return int(client.images.get(tag).labels[labels.QEMU_VERSION].split(".")[0])
