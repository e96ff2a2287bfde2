"""Bad input on the command line: one clear line, non-zero exit (no Docker needed)."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["boot", "--arch", "armv9"], "argument --arch: invalid choice: 'armv9'"),
        (["boot", "--accel", "hvf"], "argument --accel: invalid choice: 'hvf'"),
        (["images", "build", "--qemu-suite", "sid"], "argument --qemu-suite: invalid choice"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "--help" in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["boot", "--arch", "armv7", "--mem", "4096"], "--mem 4096 is out of range for armv7"),
        (["boot", "--arch", "armv8", "--smp", "0"], "--smp 0 is out of range"),
    ],
)
def test_bad_values_are_one_line_before_docker_is_touched(args: list[str], message: str) -> None:
    proc = run_cli(*args, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}: use "), proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["boot", "--arch", "armv8"],
        ["images", "list"],
        ["up"],
        ["routes"],
        ["status"],
        ["trace", "nfs", "guest"],
        ["images", "build"],
        ["down"],
    ],
)
def test_docker_not_running_is_one_line(args: list[str]) -> None:
    proc = run_cli(*args, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: Docker is not running or not reachable")
    assert "start the Docker engine" in lines[0]


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["images", "--help"],
        ["images", "build", "--help"],
        ["images", "list", "--help"],
        ["boot", "--help"],
        ["down", "--help"],
        ["up", "--help"],
        ["status", "--help"],
        ["routes", "--help"],
        ["trace", "--help"],
        ["ping", "--help"],
        ["shell", "--help"],
        ["exec", "--help"],
        ["switch-route", "--help"],
        ["graph", "--help"],
    ):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "usage: testbed" in proc.stdout, args


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_tables_written_to_a_pipe_are_not_cut_to_80_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from testbed.cli import output

    monkeypatch.delenv("COLUMNS", raising=False)
    assert output._width(_Stream(tty=False)) == output.PIPE_WIDTH  # type: ignore[arg-type]
    assert output._width(_Stream(tty=True)) is None  # type: ignore[arg-type]
    monkeypatch.setenv("COLUMNS", "100")
    assert output._width(_Stream(tty=False)) is None  # type: ignore[arg-type]
