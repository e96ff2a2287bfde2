"""Engine platforms and emulation support (binfmt_misc), decided without an engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed import platforms
from testbed.errors import UserError
from testbed.platforms import (
    AMD64,
    ARM64,
    BinfmtEntry,
    can_emulate,
    check_emulation,
    emulation_problem,
    engine_is_local,
    engine_platform_from_info,
    get_platform,
    parse_binfmt_entry,
    platform_of_arch,
    read_binfmt,
)
from tests.unit.fake_docker import FakeClient

# What Debian's qemu-user-static registers (binfmt-support), as the kernel shows it.
QEMU_AARCH64 = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("linux/arm64", ARM64),
        ("linux/amd64", AMD64),
        ("arm64", ARM64),
        ("aarch64", ARM64),
        ("x86_64", AMD64),
    ],
)
def test_get_platform(name: str, expected: platforms.Platform) -> None:
    assert get_platform(name) is expected


def test_unknown_platform_is_one_line() -> None:
    with pytest.raises(UserError) as info:
        get_platform("linux/s390x")
    assert str(info.value) == "unknown platform 'linux/s390x': use one of linux/amd64, linux/arm64"


@pytest.mark.parametrize(
    ("arch", "expected"),
    [("x86_64", AMD64), ("aarch64", ARM64), ("amd64", AMD64), ("arm64", ARM64), ("riscv64", None)],
)
def test_platform_of_arch(arch: str, expected: platforms.Platform | None) -> None:
    assert platform_of_arch(arch) is expected


def test_engine_platform_from_docker_info() -> None:
    assert engine_platform_from_info({"Architecture": "aarch64"}) is ARM64
    assert engine_platform_from_info({"Architecture": "x86_64"}) is AMD64
    with pytest.raises(UserError, match="the Docker engine runs on s390x: testbed supports"):
        engine_platform_from_info({"Architecture": "s390x"})


def test_parse_binfmt_entry() -> None:
    entry = parse_binfmt_entry(QEMU_AARCH64)
    assert entry == BinfmtEntry(True, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")
    assert parse_binfmt_entry("disabled\ninterpreter /x\nflags: \n").enabled is False


@pytest.mark.parametrize(
    ("mounted", "enabled", "entry", "problem", "fix"),
    [
        (False, False, None, "binfmt_misc is not mounted", "apt-get install qemu-user-static"),
        (True, False, None, "binfmt_misc is disabled", "echo 1 > /proc/sys/fs/binfmt_misc/status"),
        (True, True, None, "qemu-aarch64 does not exist", "mount -t binfmt_misc"),
        (
            True,
            True,
            BinfmtEntry(False, "/x", "PF"),
            "qemu-aarch64 is disabled",
            "echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64",
        ),
        (
            True,
            True,
            BinfmtEntry(True, "/usr/bin/qemu-aarch64", "P"),
            "registered without flag F (flags P)",
            "register it again with flag F",
        ),
    ],
)
def test_emulation_problems_name_the_fix(
    mounted: bool, enabled: bool, entry: BinfmtEntry | None, problem: str, fix: str
) -> None:
    found = emulation_problem(ARM64, mounted, enabled, entry)
    assert found is not None
    assert found[0].startswith("linux/arm64 needs emulation") and problem in found[0]
    assert fix in found[1]
    assert "\n" not in found[0] + found[1]


def test_flag_f_is_enough() -> None:
    assert emulation_problem(ARM64, True, True, parse_binfmt_entry(QEMU_AARCH64)) is None
    assert emulation_problem(ARM64, True, True, BinfmtEntry(True, "/x", "OCF")) is None


def binfmt_dir(tmp_path: Path, entries: dict[str, str], status: str | None = "enabled") -> Path:
    if status is not None:
        (tmp_path / "status").write_text(status + "\n")
    for name, text in entries.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_read_binfmt_from_the_kernel_files(tmp_path: Path) -> None:
    directory = binfmt_dir(tmp_path, {"qemu-aarch64": QEMU_AARCH64})
    mounted, enabled, entry = read_binfmt(ARM64, directory)
    assert mounted and enabled and entry is not None and entry.flags == "PF"
    assert read_binfmt(AMD64, directory) == (True, True, None)
    assert can_emulate(ARM64, directory) is None
    assert "qemu-x86_64 does not exist" in str(can_emulate(AMD64, directory))


def test_not_mounted(tmp_path: Path) -> None:
    assert read_binfmt(ARM64, binfmt_dir(tmp_path, {}, status=None)) == (False, False, None)


@pytest.mark.parametrize(
    ("info", "docker_host", "local"),
    [
        ({"OperatingSystem": "Debian GNU/Linux 12 (bookworm)"}, None, True),
        ({"OperatingSystem": "Ubuntu 24.04"}, "unix:///var/run/docker.sock", True),
        ({"OperatingSystem": "Docker Desktop"}, None, False),
        ({"OperatingSystem": "Ubuntu 24.04"}, "tcp://10.0.0.2:2376", False),
        ({"OperatingSystem": "Ubuntu 24.04"}, "ssh://builder", False),
    ],
)
def test_engine_is_local(info: dict[str, Any], docker_host: str | None, local: bool) -> None:
    assert engine_is_local(info, docker_host) is local


def test_native_platform_needs_no_emulation(tmp_path: Path) -> None:
    empty = binfmt_dir(tmp_path, {}, status=None)
    assert check_emulation(FakeClient("x86_64"), AMD64, binfmt_dir=empty) is False
    assert check_emulation(FakeClient("aarch64"), ARM64, binfmt_dir=empty) is False


def test_foreign_platform_refused_without_binfmt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    empty = binfmt_dir(tmp_path, {}, status=None)
    with pytest.raises(UserError) as info:
        check_emulation(FakeClient("x86_64"), ARM64, binfmt_dir=empty)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("linux/arm64 needs emulation and binfmt_misc is not mounted")
    assert "on this linux/amd64 Docker engine" in text
    assert "apt-get install qemu-user-static binfmt-support" in text
    assert "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc" in text


def test_foreign_platform_accepted_with_flag_f(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    directory = binfmt_dir(tmp_path, {"qemu-aarch64": QEMU_AARCH64})
    assert check_emulation(FakeClient("x86_64"), ARM64, binfmt_dir=directory) is True


def test_docker_desktop_is_not_judged_by_this_machines_binfmt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    empty = binfmt_dir(tmp_path, {}, status=None)
    client = FakeClient("aarch64", operating_system="Docker Desktop")
    assert check_emulation(client, AMD64, binfmt_dir=empty) is True
