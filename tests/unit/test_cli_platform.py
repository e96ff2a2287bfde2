"""--platform on the command line: one clear line for bad input (no Docker needed)."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


@pytest.mark.parametrize(
    "args",
    [
        ["images", "build", "--platform", "linux/s390x"],
        ["boot", "--arch", "armv8", "--platform", "linux/s390x"],
    ],
)
def test_unknown_platform_is_a_usage_error(args: list[str]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "argument --platform: invalid choice: 'linux/s390x'" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["images", "build", "--platform", "linux/arm64", "--only", "board"],
        ["boot", "--arch", "armv8", "--platform", "linux/arm64"],
    ],
)
def test_platform_needs_the_engine_first(args: list[str]) -> None:
    proc = run_cli(*args, env=NO_DOCKER)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Docker is not running"), proc.stderr


@pytest.mark.parametrize("verb", [["images", "build"], ["boot"]])
def test_help_names_the_platforms(verb: list[str]) -> None:
    proc = run_cli(*verb, "--help")
    assert proc.returncode == 0
    assert "--platform {linux/amd64,linux/arm64}" in proc.stdout
