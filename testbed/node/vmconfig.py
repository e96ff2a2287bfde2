"""From what a user asks for (:class:`VmSpec`) to the QEMU configuration of a lab guest."""

from __future__ import annotations

from testbed.arch import get_arch
from testbed.node.accel import choose_accel, probe_host
from testbed.node.cmdline import Disk, GuestConfig, Nic, SharedMemory
from testbed.node.guest import GuestArtifacts
from testbed.node.machine import MachinePaths
from testbed.protocol import VmSpec


def guest_config(spec: VmSpec, paths: MachinePaths, accel: str | None = None) -> GuestConfig:
    """The guest of ``spec`` with its console, QMP (two monitors: the agent holds the first,
    the second is free for one more client, such as the replication daemon or a person's
    qmp-shell) and HMP on unix sockets in ``paths``;
    ``accel`` is the resolved accelerator (resolved here from the host when None)."""
    arch = get_arch(spec.arch)
    resolved = accel or choose_accel(spec.accel, arch, probe_host())
    artifacts = GuestArtifacts.for_arch(arch)
    return GuestConfig(
        arch=arch,
        accel=resolved,
        kernel=str(artifacts.kernel),
        initrd=str(artifacts.initrd),
        serial_socket=str(paths.serial_socket),
        serial_log=str(paths.serial_log),
        qmp_socket=str(paths.qmp_socket),
        monitor_socket=str(paths.hmp_socket),
        service_qmp_socket=str(paths.service_qmp_socket),
        mem_mb=spec.mem_mb,
        smp=spec.smp,
        nic=Nic(spec.tap, spec.mac) if spec.tap and spec.mac else None,
        guest_ip=spec.guest_ip,
        guest_gateway=spec.guest_gateway,
        disk=Disk(spec.disk) if spec.disk else None,
        incoming=spec.incoming,
        start_paused=spec.paused,
        serial_wait=False,
        gdb_port=spec.gdb_port,
        shm=SharedMemory(spec.shm_path, spec.shm_size, spec.shm_first) if spec.shm_path else None,
    )
