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

from testbed import images, labels
from testbed.arch import get_arch
from testbed.errors import UserError
from testbed.node.__main__ import RESULT_PREFIX
from testbed.node.accel import ACCELS
from testbed.privileges import BOOT, Privileges

LOG = logging.getLogger(__name__)

KVM_DEVICE = "/dev/kvm"
ROOTS = ("initramfs", "disk")


@dataclass(frozen=True)
class BootRequest:
    arch: str
    mem_mb: int = 512
    smp: int = 1
    accel: str = "auto"
    suite: str = images.DEFAULT_SUITE
    root: str = "initramfs"  # or "disk": switch_root into a copy of the ext3 root disk
    timeout: float = 180.0

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


def privileges_for(accel: str, engine_arch: str) -> Privileges:
    """A boot container needs nothing (no network either), except /dev/kvm where KVM
    could run an ARM guest at all: an ARM engine, and auto or kvm requested."""
    if accel in ("auto", "kvm") and engine_arch in ("aarch64", "arm64"):
        return Privileges(devices={KVM_DEVICE: "KVM acceleration of the ARM guest"})
    return BOOT


def boot(
    client: docker.DockerClient,
    request: BootRequest,
    on_log: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Boot the guest in a new board container; the container is removed in every case
    (also on Ctrl-C, which arrives here as KeyboardInterrupt)."""
    request.validate()
    image = images.board_image(request.suite)
    images.require_image(client, image)
    engine_arch = str(client.info().get("Architecture", ""))
    privileges = privileges_for(request.accel, engine_arch)
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
        request.accel,
        "--timeout",
        str(request.timeout),
        "--root",
        request.root,
    ]
    name = f"testbed-boot-{request.arch}-{uuid.uuid4().hex[:8]}"
    create: dict[str, Any] = dict(
        image=image,
        command=command,
        name=name,
        labels=labels.for_object("boot"),
        network_mode="none",
        init=True,
        **privileges.container_kwargs(),
    )
    try:
        container = client.containers.create(**create)
    except docker.errors.APIError as exc:
        if not privileges.devices or request.accel == "kvm":
            raise
        LOG.info("no %s on the Docker host (%s): TCG", KVM_DEVICE, exc.explanation)
        create.update(BOOT.container_kwargs())
        container = client.containers.create(**create)
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
        status = container.wait(timeout=30)
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
    result["image"] = image
    return result
