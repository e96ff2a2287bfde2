"""``python3 -m testbed.node boot``: boot one guest, prove it runs, report, shut down."""

from __future__ import annotations

import asyncio
import logging
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.arch import get_arch
from testbed.node.accel import choose_accel, probe_host
from testbed.node.guest import READY_PATTERN, GuestArtifacts
from testbed.node.machine import Machine, MachinePaths
from testbed.node.vmconfig import guest_config
from testbed.protocol import VmSpec

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootReport:
    arch: str
    guest_uname: str
    kernel_release: str
    qemu_version: str
    qemu_package: str
    accel: str
    boot_seconds: float  # QEMU start to the ready marker
    root: str  # initramfs | disk (switch_root into the ext3 root disk)
    mem_mb: int
    smp: int
    host_machine: str
    qemu_command: list[str]


async def _boot(spec: VmSpec, timeout: float, work: Path) -> BootReport:
    paths = MachinePaths.under(work, spec.name)
    accel = choose_accel(spec.accel, get_arch(spec.arch), probe_host())
    machine = Machine(spec, guest_config(spec, paths, accel), paths, console_mux=False)
    async with machine:
        started = time.monotonic()
        await machine.launch()
        LOG.info("QEMU %s is up, waiting for the guest's ready marker", machine.qemu_version)
        ready = await machine.console.wait_for(READY_PATTERN, timeout)
        boot_seconds = time.monotonic() - started
        LOG.info("guest ready after %.2f s: %s", boot_seconds, ready.group(0))
        uname = await machine.console.run("uname -m", timeout=30)
        if uname.status != 0:
            raise RuntimeError(f"uname -m failed in the guest: {uname.output!r}")
        LOG.info("guest says: uname -m = %s", uname.output.strip())
        return BootReport(
            arch=spec.arch,
            guest_uname=uname.output.strip(),
            kernel_release=ready.group(2),
            qemu_version=machine.qemu_version,
            qemu_package=machine.qemu_package,
            accel=accel,
            boot_seconds=round(boot_seconds, 3),
            root=ready.group(3),
            mem_mb=spec.mem_mb,
            smp=spec.smp,
            host_machine=platform.machine(),
            qemu_command=machine.command,
        )


def boot_guest(
    arch_name: str,
    mem_mb: int,
    smp: int,
    accel: str,
    timeout: float = 120.0,
    root: str = "initramfs",
) -> BootReport:
    arch = get_arch(arch_name)
    with tempfile.TemporaryDirectory(prefix="testbed-boot-") as tmp:
        work = Path(tmp)
        disk = None
        if root == "disk":  # a private copy: the image in the board stays pristine
            shutil.copyfile(GuestArtifacts.for_arch(arch).rootfs, work / "rootfs.ext3")
            disk = str(work / "rootfs.ext3")
        spec = VmSpec(arch=arch.name, accel=accel, mem_mb=mem_mb, smp=smp, disk=disk)
        LOG.info("starting %s (%s, -m %d, -smp %d)", arch.name, accel, mem_mb, smp)
        return asyncio.run(_boot(spec, timeout, work))
