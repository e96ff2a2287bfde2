"""``testbed boot``: a throwaway board container boots one guest and reports."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from testbed import images, labels, platforms
from testbed.arch import get_arch
from testbed.docker_client import create_container
from testbed.errors import UserError
from testbed.node.__main__ import RESULT_PREFIX
from testbed.node.accel import ACCELS
from testbed.privileges import boot_privileges

LOG = logging.getLogger(__name__)

ROOTS = ("initramfs", "disk")
# A board of another platform runs QEMU under qemu-user: many times slower.
EMULATED_TIMEOUT = 1800.0


@dataclass(frozen=True)
class BootRequest:
    arch: str
    mem_mb: int = 512
    smp: int = 1
    accel: str = "auto"
    suite: str = images.DEFAULT_SUITE
    root: str = "initramfs"  # or "disk": switch_root into a copy of the ext3 root disk
    timeout: float | None = None  # to the guest's ready marker: 180 s, emulated 1800 s
    platform: str | None = None  # the board image's platform; None: the engine's own

    def validate(self) -> None:
        arch = get_arch(self.arch)
        if self.accel not in ACCELS:
            raise UserError(
                f"unknown accelerator {self.accel!r}", f"use one of {', '.join(ACCELS)}"
            )
        if not 64 <= self.mem_mb <= arch.max_mem_mb:
            raise UserError(
                f"--mem {self.mem_mb} is out of range for {arch.name}",
                f"use 64 to {arch.max_mem_mb} MB",
            )
        if not 1 <= self.smp <= 8:
            raise UserError(f"--smp {self.smp} is out of range", "use 1 to 8")
        images.check_suite(self.suite)
        if self.root not in ROOTS:
            raise UserError(f"unknown root {self.root!r}", f"use one of {', '.join(ROOTS)}")
        if self.platform is not None:
            platforms.get_platform(self.platform)


@dataclass(frozen=True)
class BootPlan:
    """Everything decided before a container is created."""

    image: str  # the tag, for the report
    image_id: str  # what the container is created from (a local ID is never pulled)
    board: platforms.Platform
    engine: platforms.EngineFacts
    accel: str  # resolved: tcg | kvm
    timeout: float

    @property
    def emulated(self) -> bool:
        return self.board != self.engine.platform


def plan(client: docker.DockerClient, request: BootRequest) -> BootPlan:
    """Image, platform and accelerator, all checked before anything is created: a missing
    or wrong-platform image, a platform the engine cannot emulate, or --accel kvm where KVM
    is impossible is one line and nothing is left behind."""
    request.validate()
    engine = platforms.engine_platform(client)
    board = platforms.get_platform(request.platform) if request.platform else engine
    target = images.Target(board, engine)
    platforms.check_emulation(client, board, engine)
    tag = target.board(request.suite)
    image = images.require_image(client, tag, board)
    facts = platforms.engine_facts(client, request.accel, str(image.id), board, engine)
    accel = platforms.resolve_accel(request.accel, get_arch(request.arch), facts, board)
    timeout = request.timeout or (EMULATED_TIMEOUT if target.foreign else 180.0)
    return BootPlan(tag, str(image.id), board, facts, accel, timeout)


def boot(
    client: docker.DockerClient,
    request: BootRequest,
    on_log: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Boot the guest in a new board container; the container is removed in every case
    (also on Ctrl-C, which arrives here as KeyboardInterrupt)."""
    decided = plan(client, request)
    privileges = boot_privileges(decided.accel)
    command = [
        "python3",
        "-m",
        "testbed.node",
        "boot",
        "--arch",
        request.arch,
        "--mem",
        str(request.mem_mb),
        "--smp",
        str(request.smp),
        "--accel",
        decided.accel,
        "--timeout",
        str(decided.timeout),
        "--root",
        request.root,
    ]
    name = f"testbed-boot-{request.arch}-{uuid.uuid4().hex[:8]}"
    # From the image's ID and without a platform option: the engine takes the local image
    # that require_image checked and never tries to pull (Docker 20.10 pulls when
    # --platform names a platform its local image does not say it is).
    create: dict[str, Any] = dict(
        image=decided.image_id,
        command=command,
        name=name,
        labels=labels.for_object("boot", **{platforms.PLATFORM_LABEL: decided.board.name}),
        network_mode="none",
        init=True,
        **privileges.container_kwargs(),
    )
    container = create_container(client, **create)
    result: dict[str, object] | None = None
    stderr_tail: list[str] = []
    try:
        container.start()
        for raw in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            for line in raw.decode(errors="replace").splitlines():
                if line.startswith(RESULT_PREFIX):
                    result = json.loads(line[len(RESULT_PREFIX) :])
                    continue
                stderr_tail = (stderr_tail + [line])[-30:]
                if on_log:
                    on_log(line)
        status = container.wait(timeout=60)
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    if result is None:
        raise UserError(
            f"the board container exited ({status.get('StatusCode')}) without a result",
            "its last lines were: " + " | ".join(stderr_tail[-5:]),
        )
    if "error" in result:
        raise UserError(str(result["error"]))
    result["image"] = decided.image
    result["platform"] = decided.board.name
    result["engine_platform"] = decided.engine.platform.name
    result["emulated"] = decided.emulated
    result["kvm_probe"] = decided.engine.detail
    return result
