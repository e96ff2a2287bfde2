"""``python3 -m testbed.node boot``: boot one guest, prove it runs, report, shut down."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed.arch import get_arch
from testbed.node.accel import choose_accel, probe_host
from testbed.node.cmdline import Disk, GuestConfig
from testbed.node.guest import PROMPT_PATTERN, READY_PATTERN, GuestArtifacts
from testbed.node.vm import VirtualMachine

LOG = logging.getLogger(__name__)


@dataclass
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

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def boot_guest(
    arch_name: str,
    mem_mb: int,
    smp: int,
    accel: str,
    timeout: float = 120.0,
    root: str = "initramfs",
) -> BootReport:
    arch = get_arch(arch_name)
    host = probe_host()
    resolved = choose_accel(accel, arch, host)
    artifacts = GuestArtifacts.for_arch(arch)
    with tempfile.TemporaryDirectory(prefix="testbed-boot-") as tmp:
        work = Path(tmp)
        disk = None
        if root == "disk":  # a private copy: the image in the board stays pristine
            shutil.copyfile(artifacts.rootfs, work / "rootfs.ext3")
            disk = Disk(str(work / "rootfs.ext3"))
        config = GuestConfig(
            arch=arch,
            accel=resolved,
            kernel=str(artifacts.kernel),
            initrd=str(artifacts.initrd),
            serial_socket=str(work / "serial.sock"),
            serial_log=str(work / "serial.log"),
            qmp_socket=str(work / "qmp.sock"),
            mem_mb=mem_mb,
            smp=smp,
            disk=disk,
        )
        LOG.info("starting %s (%s, -m %d, -smp %d)", config.arch.name, resolved, mem_mb, smp)
        with VirtualMachine(config, work) as vm:
            vm.console.prompt = PROMPT_PATTERN
            vm.launch()
            assert vm.launched_at is not None
            version, package = vm.qemu_version()
            LOG.info("QEMU %s is up, waiting for the guest's ready marker", version)
            ready = vm.console.wait_for(READY_PATTERN, timeout)
            boot_seconds = time.monotonic() - vm.launched_at
            LOG.info("guest ready after %.2f s: %s", boot_seconds, ready.group(0))
            uname = vm.console.run("uname -m", timeout=30)
            if uname.status != 0:
                raise RuntimeError(f"uname -m failed in the guest: {uname.output!r}")
            LOG.info("guest says: uname -m = %s", uname.output.strip())
            return BootReport(
                arch=arch.name,
                guest_uname=uname.output.strip(),
                kernel_release=ready.group(2),
                qemu_version=version,
                qemu_package=package,
                accel=resolved,
                boot_seconds=round(boot_seconds, 3),
                root=ready.group(3),
                mem_mb=mem_mb,
                smp=smp,
                host_machine=host.machine,
                qemu_command=vm.command,
            )
