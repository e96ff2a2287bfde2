"""Host-side accelerator resolution, container privileges and the QEMU command line for
every combination: engine amd64/arm64 x guest armv7/armv8 x --accel auto/tcg/kvm x
/dev/kvm usable in containers or not x KVM_CAP_ARM_EL1_32BIT or not.  The engine is a
stand-in (tests/unit/fake_docker.py); the decisions are the product's (boot.plan)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from testbed import boot, platforms
from testbed.arch import get_arch
from testbed.boot import BootRequest
from testbed.errors import UserError
from testbed.node.cmdline import GuestConfig, machine_args
from testbed.platforms import AMD64, ARM64, EngineFacts, resolve_accel
from testbed.privileges import board_privileges, boot_privileges
from tests.unit.fake_docker import FakeClient, FakeImage

BOARD = "gauss-testbed/qemu-arm:bookworm-backports"
KVM_DEVICE = "/dev/kvm:/dev/kvm:rwm"

ENGINES = {"amd64": "x86_64", "arm64": "aarch64"}
MATRIX = list(
    itertools.product(
        ("amd64", "arm64"),  # engine
        ("armv7", "armv8"),  # guest
        ("auto", "tcg", "kvm"),  # --accel
        (True, False),  # /dev/kvm usable in a container
        (True, False),  # KVM_CAP_ARM_EL1_32BIT
    )
)


def client_for(engine: str, kvm: bool, el1_32bit: bool) -> FakeClient:
    probe = {"machine": "aarch64", "kvm_usable": True, "kvm_el1_32bit": el1_32bit}
    return FakeClient(
        ENGINES[engine],
        images=[FakeImage(BOARD, engine, f"linux/{engine}")],
        probe=probe if kvm else None,
    )


def expected_accel(engine: str, guest: str, accel: str, kvm: bool, el1_32bit: bool) -> str | None:
    """The rule, written out independently: KVM runs an ARM guest only on an arm64 engine
    that gives containers /dev/kvm, and an armv7 guest only with AArch32 at EL1.
    None: refused."""
    possible = engine == "arm64" and kvm and (guest == "armv8" or el1_32bit)
    if accel == "tcg":
        return "tcg"
    if accel == "auto":
        return "kvm" if possible else "tcg"
    return "kvm" if possible else None


def config(guest: str, accel: str) -> GuestConfig:
    return GuestConfig(get_arch(guest), accel, "/k", "/i", "/s.sock", "/s.log", "/q.sock")


@pytest.mark.parametrize(("engine", "guest", "accel", "kvm", "el1_32bit"), MATRIX)
def test_matrix(engine: str, guest: str, accel: str, kvm: bool, el1_32bit: bool) -> None:
    client = client_for(engine, kvm, el1_32bit)
    expected = expected_accel(engine, guest, accel, kvm, el1_32bit)
    request = BootRequest(guest, accel=accel)

    # the engine is probed only where the answer can matter: arm64, and auto or kvm
    probes = 1 if engine == "arm64" and accel != "tcg" else 0
    if expected is None:
        with pytest.raises(UserError) as info:
            boot.plan(client, request)
        text = str(info.value)
        assert "\n" not in text
        assert text.startswith("--accel kvm is impossible here: ")
        assert text.endswith(": use --accel auto or tcg")
        if engine == "amd64":
            assert "KVM on a x86_64 host cannot run an ARM guest" in text
        elif not kvm:
            assert "the Docker engine gives containers no usable /dev/kvm" in text
            assert "error gathering device information" in text  # what the probe saw
        else:
            assert "cannot run 32-bit (AArch32) guests under KVM" in text
        assert len(client.containers.created) == probes
        assert all(c.removed for c in client.containers.created)
        return

    decided = boot.plan(client, request)
    assert decided.accel == expected
    assert decided.image == BOARD and not decided.emulated
    assert len(client.containers.created) == probes
    for probe in client.containers.created:
        kwargs = probe.kwargs
        assert probe.removed and kwargs["network_mode"] == "none"
        assert kwargs["devices"] == [KVM_DEVICE] and kwargs["cap_drop"] == ["ALL"]
        assert kwargs["cap_add"] == [] and not kwargs.get("privileged")

    # the containers' privileges follow the resolved accelerator, never --privileged
    boot_kwargs = boot_privileges(decided.accel).container_kwargs()
    board_kwargs = board_privileges(decided.accel).container_kwargs()
    for kwargs in (boot_kwargs, board_kwargs):
        assert "privileged" not in kwargs and kwargs["cap_drop"] == ["ALL"]
        assert "no-new-privileges" in kwargs["security_opt"]
        assert (KVM_DEVICE in kwargs["devices"]) is (expected == "kvm")
    assert boot_kwargs["cap_add"] == [] and board_kwargs["cap_add"] == ["NET_ADMIN"]
    assert "/dev/net/tun:/dev/net/tun:rwm" in board_kwargs["devices"]
    assert len(boot_kwargs["devices"]) == (1 if expected == "kvm" else 0)

    # and so does QEMU's command line
    argv = machine_args(config(guest, decided.accel))
    if expected == "kvm":
        cpu = "host" if guest == "armv8" else "host,aarch64=off"
        assert argv == [
            "qemu-system-aarch64",
            "-machine",
            "virt,gic-version=host",
            "-accel",
            "kvm",
            "-cpu",
            cpu,
        ]
    else:
        binary, cpu = {
            "armv7": ("qemu-system-arm", "cortex-a15"),
            "armv8": ("qemu-system-aarch64", "cortex-a57"),
        }[guest]
        assert argv == [binary, "-machine", "virt", "-accel", "tcg", "-cpu", cpu]


def test_matrix_is_complete() -> None:
    assert len(MATRIX) == 48
    outcomes = {expected_accel(*case) for case in MATRIX}
    assert outcomes == {"kvm", "tcg", None}


def emulating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /q\nflags: PF\n")
    monkeypatch.setattr(platforms, "BINFMT_DIR", tmp_path)
    monkeypatch.delenv("DOCKER_HOST", raising=False)


def emulated_client(**kwargs: Any) -> FakeClient:
    arm64_board = FakeImage(f"{BOARD}-arm64", "arm64", "linux/arm64", id="sha256:arm64board")
    return FakeClient("x86_64", images=[arm64_board], **kwargs)


def test_emulated_arm64_board_runs_tcg_from_its_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulating(tmp_path, monkeypatch)
    client = emulated_client()
    decided = boot.plan(client, BootRequest("armv8", platform="linux/arm64"))
    assert decided.image == f"{BOARD}-arm64" and decided.image_id == "sha256:arm64board"
    assert decided.emulated and decided.board is ARM64 and decided.accel == "tcg"
    assert decided.timeout == boot.EMULATED_TIMEOUT
    assert client.containers.created == []  # no KVM probe on an amd64 engine


def test_kvm_refused_for_an_emulated_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulating(tmp_path, monkeypatch)
    with pytest.raises(UserError, match="board image is linux/arm64, run by emulation"):
        boot.plan(emulated_client(), BootRequest("armv8", accel="kvm", platform="linux/arm64"))


def test_emulated_board_on_an_arm64_engine_is_not_probed() -> None:
    facts = platforms.engine_facts(FakeClient("aarch64"), "auto", "img", AMD64)
    assert facts == EngineFacts(ARM64, detail="not probed: linux/amd64 board runs by emulation")
    assert resolve_accel("auto", get_arch("armv8"), facts, AMD64) == "tcg"


def test_foreign_platform_refused_before_anything_without_emulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platforms, "BINFMT_DIR", tmp_path)  # empty: not mounted
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    client = emulated_client()
    with pytest.raises(UserError) as info:
        boot.boot(client, BootRequest("armv8", platform="linux/arm64"))
    assert "binfmt_misc is not mounted" in str(info.value)
    assert client.containers.created == []


def test_kvm_refused_on_amd64_before_any_container() -> None:
    client = client_for("amd64", kvm=True, el1_32bit=False)
    with pytest.raises(UserError, match="--accel kvm is impossible here"):
        boot.boot(client, BootRequest("armv8", accel="kvm"))
    assert client.containers.created == []


def test_probe_that_exits_badly_means_no_kvm() -> None:
    client = client_for("arm64", kvm=True, el1_32bit=True)
    client.containers.probe = {"machine": "aarch64", "kvm_usable": False, "kvm_el1_32bit": False}
    kvm, el1, detail = platforms.probe_kvm(client, BOARD)
    assert (kvm, el1) == (False, False) and "does not open read-write" in detail


def test_unresolved_accel_has_no_privileges() -> None:
    with pytest.raises(ValueError, match="resolved"):
        boot_privileges("auto")
    with pytest.raises(ValueError, match="resolved"):
        board_privileges("kvm ")
