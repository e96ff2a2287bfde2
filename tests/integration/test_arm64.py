"""The arm64 board by emulation: built and booted through the product's own commands on an
engine of another platform (binfmt_misc + qemu-user-static with flag F).

Slow (the board's packages are installed under emulation), so it runs only on request:

    TESTBED_ARM64=1 python -m pytest -m arm64 tests/integration/test_arm64.py

and is skipped (with the reason) unless TESTBED_ARM64=1 is set and the engine can run
arm64 programs.  On an arm64 engine the same commands build and boot natively."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from testbed import platforms
from testbed.errors import UserError
from tests.conftest import run_cli

HOURS = 3600.0


def _skip_reason() -> str | None:
    if os.environ.get("TESTBED_ARM64") != "1":
        return "set TESTBED_ARM64=1 to build and boot the arm64 board by emulation (slow)"
    try:
        from testbed.docker_client import connect

        client = connect()
        engine = platforms.engine_platform(client)
        if engine != platforms.ARM64:
            platforms.check_emulation(client, platforms.ARM64, engine)
    except UserError as exc:
        return f"the engine cannot run arm64 images: {exc}"
    return None


SKIP = _skip_reason()
pytestmark = [pytest.mark.arm64, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]


@pytest.fixture(scope="module")
def arm64_board(docker_client: docker.DockerClient) -> Iterator[dict[str, Any]]:
    """`testbed images build --platform linux/arm64 --only board`, as a user runs it."""
    proc = run_cli(
        "images",
        "build",
        "--platform",
        "linux/arm64",
        "--only",
        "board",
        "--json",
        timeout=4 * HOURS,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = json.loads(proc.stdout)
    assert built["platform"] == "linux/arm64" and len(built["images"]) == 1
    yield built["images"][0]


def test_arm64_board_image_says_arm64(
    docker_client: docker.DockerClient, arm64_board: dict[str, Any]
) -> None:
    image = docker_client.images.get(arm64_board["tag"])
    assert image.attrs["Architecture"] == "arm64"
    assert image.labels[platforms.PLATFORM_LABEL] == "linux/arm64"
    engine = platforms.engine_platform(docker_client)
    if engine != platforms.ARM64:  # a foreign image never takes the plain name
        assert arm64_board["tag"].endswith("-arm64")
    assert arm64_board["qemu_version"]


def test_boot_armv8_on_the_arm64_board(
    docker_client: docker.DockerClient, arm64_board: dict[str, Any]
) -> None:
    proc = run_cli(
        "boot", "--arch", "armv8", "--platform", "linux/arm64", "--json", timeout=2 * HOURS
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["guest_uname"] == "aarch64"
    assert result["image"] == arm64_board["tag"] and result["platform"] == "linux/arm64"
    assert result["host_machine"] == "aarch64"  # the board's own python ran as arm64
    assert docker_client.images.get(result["image"]).attrs["Architecture"] == "arm64"
    if result["emulated"]:
        assert result["accel"] == "tcg"


def test_arm64_image_under_the_engines_name_is_refused(
    docker_client: docker.DockerClient, arm64_board: dict[str, Any]
) -> None:
    """Never picked silently: the arm64 board tagged as the amd64 engine's own board."""
    if platforms.engine_platform(docker_client) == platforms.ARM64:
        pytest.skip("on an arm64 engine the arm64 board is the engine's own")
    prefix = "testbed-arm64-mislabel"
    wrong = f"{prefix}/qemu-arm:bookworm-backports"
    docker_client.images.get(arm64_board["tag"]).tag(wrong)
    try:
        proc = run_cli("boot", "--arch", "armv8", env={"TESTBED_IMAGE_PREFIX": prefix})
    finally:
        docker_client.images.remove(wrong, noprune=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"error: image {wrong} is linux/arm64, not linux/amd64: run `testbed images build`"
    ]
