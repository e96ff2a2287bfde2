"""Engine and image platforms, emulation and KVM: facts about the Docker ENGINE.

Everything the host side decides about architectures is here:

* which platform the engine runs (``docker info``'s Architecture) and which one an image
  is for (image inspect's Architecture and the ``io.gauss-testbed.platform`` label);
* whether the engine can run another platform's images by emulation (binfmt_misc with
  qemu-user registered with flag F);
* whether a board container can use KVM for the ARM guest, and so what ``--accel
  auto|tcg|kvm`` resolves to before anything is created.

The decisions are pure functions (unit-tested on every combination); the probes that feed
them are small and talk to the engine only through the Docker API."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from testbed import labels
from testbed.arch import GuestArch
from testbed.config import PLATFORM_NAMES
from testbed.docker_client import create_container
from testbed.errors import UserError
from testbed.node.accel import ACCELS, KVM_DEVICE, HostFacts, kvm_refusal
from testbed.privileges import Privileges, board_privileges, boot_privileges

LOG = logging.getLogger(__name__)

# On every image the testbed builds: the platform its content is for (linux/arm64, ...).
PLATFORM_LABEL = "io.gauss-testbed.platform"


@dataclass(frozen=True)
class Platform:
    """One engine / image platform."""

    name: str  # linux/arm64: what users type, what the label says
    arch: str  # Docker's architecture name (image inspect): amd64 | arm64
    machine: str  # uname -m, and docker info's Architecture: x86_64 | aarch64
    qemu_user: str  # the binfmt_misc entry that emulates it on other hosts
    hub_namespace: str  # Docker Hub's per-architecture repositories of official images


AMD64 = Platform("linux/amd64", "amd64", "x86_64", "qemu-x86_64", "amd64")
ARM64 = Platform("linux/arm64", "arm64", "aarch64", "qemu-aarch64", "arm64v8")
PLATFORMS: dict[str, Platform] = {p.name: p for p in (AMD64, ARM64)}
assert tuple(PLATFORMS) == PLATFORM_NAMES
_BY_ARCH = {
    "amd64": AMD64,
    "x86_64": AMD64,
    "x86-64": AMD64,
    "arm64": ARM64,
    "aarch64": ARM64,
    "arm64/v8": ARM64,
}


def get_platform(name: str) -> Platform:
    """``linux/arm64`` (or ``arm64``, ``aarch64``) -> ARM64; a clear error otherwise."""
    found = PLATFORMS.get(name) or _BY_ARCH.get(name.removeprefix("linux/").lower())
    if found is None:
        raise UserError(f"unknown platform {name!r}", f"use one of {', '.join(PLATFORMS)}")
    return found


def platform_of_arch(arch: str) -> Platform | None:
    """The platform of an architecture as Docker or uname spell it, or None."""
    return _BY_ARCH.get(arch.strip().lower())


def engine_platform_from_info(info: dict[str, Any]) -> Platform:
    arch = str(info.get("Architecture", ""))
    found = platform_of_arch(arch)
    if found is None:
        raise UserError(
            f"the Docker engine runs on {arch or 'an unknown architecture'}",
            f"testbed supports {' and '.join(PLATFORMS)} engines",
        )
    return found


def engine_platform(client: docker.DockerClient) -> Platform:
    """The platform of the engine (not of this machine: with Docker Desktop or a remote
    DOCKER_HOST they differ)."""
    return engine_platform_from_info(client.info())


def image_platform(attrs: dict[str, Any]) -> tuple[Platform | None, str | None]:
    """(platform from image inspect's Architecture, platform label or None)."""
    config = attrs.get("Config") or {}
    label = (config.get("Labels") or {}).get(PLATFORM_LABEL) or None
    return platform_of_arch(str(attrs.get("Architecture", ""))), label


# -- emulation (binfmt_misc) -----------------------------------------------------------------
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
ENABLE_EMULATION = (
    "as root: apt-get install qemu-user-static binfmt-support, and mount binfmt_misc if "
    "it is not (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
)


@dataclass(frozen=True)
class BinfmtEntry:
    """One /proc/sys/fs/binfmt_misc/NAME file."""

    enabled: bool
    interpreter: str
    flags: str


def parse_binfmt_entry(text: str) -> BinfmtEntry:
    enabled = False
    interpreter = flags = ""
    for line in text.splitlines():
        line = line.strip()
        if line in ("enabled", "disabled"):
            enabled = line == "enabled"
        elif line.startswith("interpreter "):
            interpreter = line.split(None, 1)[1]
        elif line.startswith("flags:"):
            flags = line.split(":", 1)[1].strip()
    return BinfmtEntry(enabled, interpreter, flags)


def emulation_problem(
    target: Platform, mounted: bool, globally_enabled: bool, entry: BinfmtEntry | None
) -> tuple[str, str] | None:
    """Why this kernel cannot run ``target``'s programs inside containers, with the fix;
    None when it can.  Flag F (fix binary) matters: the interpreter is opened when it is
    registered, so it works inside every container without being in the image."""
    where = BINFMT_DIR / target.qemu_user
    if not mounted:
        return (
            f"{target.name} needs emulation and binfmt_misc is not mounted ({BINFMT_DIR} is empty)",
            ENABLE_EMULATION,
        )
    if not globally_enabled:
        return (
            f"{target.name} needs emulation and binfmt_misc is disabled",
            f"as root: echo 1 > {BINFMT_DIR}/status",
        )
    if entry is None:
        return (f"{target.name} needs emulation and {where} does not exist", ENABLE_EMULATION)
    if not entry.enabled:
        return (
            f"{target.name} needs emulation and {where} is disabled",
            f"as root: echo 1 > {where}",
        )
    if "F" not in entry.flags:
        return (
            f"{target.name} needs emulation and {where} is registered without flag F "
            f"(flags {entry.flags or 'none'}), so its interpreter is not usable inside "
            "containers",
            "register it again with flag F: Debian's qemu-user-static does (apt-get "
            "install qemu-user-static binfmt-support)",
        )
    return None


def read_binfmt(
    target: Platform, binfmt_dir: Path | None = None
) -> tuple[bool, bool, BinfmtEntry | None]:
    """(mounted, globally enabled, the target's entry) as this machine's kernel has them."""
    binfmt_dir = binfmt_dir or BINFMT_DIR
    status = binfmt_dir / "status"
    try:
        mounted = status.is_file()
        globally_enabled = mounted and status.read_text().strip() == "enabled"
    except OSError:
        return False, False, None
    try:
        entry = parse_binfmt_entry((binfmt_dir / target.qemu_user).read_text())
    except OSError:
        entry = None
    return mounted, globally_enabled, entry


def engine_is_local(info: dict[str, Any], docker_host: str | None) -> bool:
    """Whether this machine's kernel is the engine's: not Docker Desktop's VM, not a
    remote DOCKER_HOST.  Only then does /proc/sys/fs/binfmt_misc here tell the truth."""
    if "docker desktop" in str(info.get("OperatingSystem", "")).lower():
        return False
    return not docker_host or docker_host.startswith("unix://")


def check_emulation(
    client: docker.DockerClient,
    target: Platform,
    engine: Platform | None = None,
    *,
    binfmt_dir: Path | None = None,
) -> bool:
    """Refuse, with one line naming the fix, a foreign ``target`` the engine cannot
    emulate.  Returns True when ``target`` is foreign (runs by emulation).

    The check reads binfmt_misc on this machine, which is the engine's kernel for a local
    engine.  Docker Desktop registers its own emulators in its VM, and a remote engine
    cannot be inspected from here: for those the build or run itself will tell."""
    info = client.info()
    engine = engine or engine_platform_from_info(info)
    if target == engine:
        return False
    if not engine_is_local(info, os.environ.get("DOCKER_HOST")):
        LOG.info("engine is not local: not checking binfmt_misc for %s here", target.name)
        return True
    problem = emulation_problem(target, *read_binfmt(target, binfmt_dir))
    if problem:
        raise UserError(f"{problem[0]} on this {engine.name} Docker engine", problem[1])
    return True


def can_emulate(target: Platform, binfmt_dir: Path | None = None) -> str | None:
    """None when this machine's kernel runs ``target``'s programs in containers, else why
    not (for test skips and diagnostics; no engine needed)."""
    problem = emulation_problem(target, *read_binfmt(target, binfmt_dir))
    return None if problem is None else problem[0]


# -- KVM on the engine ---------------------------------------------------------------------
@dataclass(frozen=True)
class EngineFacts:
    """What decides whether a board container can run an ARM guest under KVM."""

    platform: Platform  # the engine's
    kvm: bool = False  # a container given /dev/kvm opens it read-write
    kvm_el1_32bit: bool = False  # KVM_CAP_ARM_EL1_32BIT there: armv7 guests under KVM
    detail: str = ""  # what the probe saw (or why it did not run)
    probed: bool = field(default=False, compare=False)


def kvm_refusal_on_engine(guest: GuestArch, engine: EngineFacts, board: Platform) -> str | None:
    """Why KVM cannot run ``guest`` in a board container of platform ``board`` on this
    engine, or None when it can.  Same rules as inside the node (accel.kvm_refusal), plus
    the emulated board: QEMU under qemu-user cannot use the host's KVM."""
    if board != engine.platform:
        return (
            f"the board image is {board.name}, run by emulation on this "
            f"{engine.platform.name} Docker engine"
        )
    if engine.platform != ARM64:
        return (
            f"KVM on a {engine.platform.machine} host cannot run an ARM guest "
            f"(the Docker engine is {engine.platform.name})"
        )
    if not engine.kvm:
        reason = f"the Docker engine gives containers no usable {KVM_DEVICE}"
        return f"{reason} ({engine.detail})" if engine.detail else reason
    # the rest as inside the node: AArch32 at EL1 for armv7 guests
    return kvm_refusal(guest, HostFacts(engine.platform.machine, True, engine.kvm_el1_32bit))


def resolve_accel(
    requested: str, guest: GuestArch, engine: EngineFacts, board: Platform | None = None
) -> str:
    """``auto|tcg|kvm`` -> ``tcg`` or ``kvm`` for ``guest`` on this engine; ``kvm`` where
    it is impossible is a UserError of one line."""
    if requested not in ACCELS:
        raise UserError(f"unknown accelerator {requested!r}", f"use one of {', '.join(ACCELS)}")
    if requested == "tcg":
        return "tcg"
    refusal = kvm_refusal_on_engine(guest, engine, board or engine.platform)
    if requested == "kvm" and refusal:
        raise UserError(f"--accel kvm is impossible here: {refusal}", "use --accel auto or tcg")
    return "tcg" if refusal else "kvm"


# The probe's program, run by the board image's own python3 (testbed is installed there).
_PROBE_SCRIPT = (
    "import json, dataclasses; from testbed.node.accel import probe_host; "
    "print(json.dumps(dataclasses.asdict(probe_host())))"
)


def probe_kvm(client: docker.DockerClient, image: str) -> tuple[bool, bool, str]:
    """(kvm usable, EL1 32-bit, detail), asked of the engine through the Docker API.

    A throwaway container of the board image ``image`` (no network, every capability
    dropped, /dev/kvm its only device) opens /dev/kvm read-write and asks
    KVM_CHECK_EXTENSION(KVM_CAP_ARM_EL1_32BIT), then is removed.  An engine without
    /dev/kvm refuses to create or start it ("error gathering device information while
    adding custom device"), which is the answer "no KVM"."""
    container = None
    try:
        container = create_container(
            client,
            image,
            ["python3", "-c", _PROBE_SCRIPT],
            labels=labels.for_object("probe"),
            network_mode="none",
            **boot_privileges("kvm").container_kwargs(),
        )
        container.start()
        status = container.wait(timeout=120)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    except docker.errors.APIError as exc:
        text = str(exc.explanation or exc) or type(exc).__name__
        return False, False, text.splitlines()[0][:200]
    except requests.exceptions.RequestException as exc:  # wait() timed out
        return False, False, f"probe did not finish: {exc}"[:200]
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if status.get("StatusCode") != 0 or not lines:
        return False, False, f"probe exited {status.get('StatusCode')}: {output.strip()[-200:]}"
    facts = json.loads(lines[-1])
    if not facts.get("kvm_usable"):
        return False, False, f"{KVM_DEVICE} does not open read-write in a container"
    return True, bool(facts.get("kvm_el1_32bit")), f"{KVM_DEVICE} usable in containers"


def engine_facts(
    client: docker.DockerClient,
    requested: str,
    board_image: str,
    board: Platform | None = None,
    engine: Platform | None = None,
) -> EngineFacts:
    """The facts ``resolve_accel`` needs, probing the engine only where the answer can
    change the result: an arm64 engine, a native board, and auto or kvm requested."""
    engine = engine or engine_platform(client)
    if requested == "tcg":
        return EngineFacts(engine, detail="not probed: --accel tcg")
    if engine != ARM64:
        return EngineFacts(engine, detail=f"not probed: a {engine.name} engine")
    if board is not None and board != engine:
        return EngineFacts(engine, detail=f"not probed: {board.name} board runs by emulation")
    kvm, el1_32bit, detail = probe_kvm(client, board_image)
    LOG.info("KVM probe on the engine: kvm=%s el1_32bit=%s (%s)", kvm, el1_32bit, detail)
    return EngineFacts(engine, kvm, el1_32bit, detail, probed=True)


def board_privileges_for(
    client: docker.DockerClient, requested: str, arch: str, suite: str
) -> tuple[Privileges, str]:
    """The lab boards' privileges and the resolved accelerator for a guest of ``arch``:
    /dev/kvm goes to the boards only when KVM will run it.  ``--accel kvm`` where KVM is
    impossible is refused here, before anything is created."""
    return board_privileges_by_arch(client, requested, [arch], suite)[arch]


def board_privileges_by_arch(
    client: docker.DockerClient, requested: str, arches: list[str], suite: str
) -> dict[str, tuple[Privileges, str]]:
    """:func:`board_privileges_for` of each of ``arches``, the engine probed once."""
    from testbed import images
    from testbed.arch import get_arch

    facts = engine_facts(client, requested, images.board_image(suite))
    by_arch = {}
    for arch in arches:
        accel = resolve_accel(requested, get_arch(arch), facts)
        by_arch[arch] = (board_privileges(accel), accel)
    return by_arch
