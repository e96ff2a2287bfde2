"""The seed's procedure step by step, as a person runs it: start a guest on a board, start
the destination with -incoming, migrate, compare, stop.  The VMs started here outlive
the command (their agent session releases them) until ``testbed guest stop`` or
``testbed down``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from testbed.arch import get_arch
from testbed.checks.migration import MemoryObservation
from testbed.errors import UserError
from testbed.lab.agent_client import AgentError
from testbed.lab.lab import Lab
from testbed.protocol import (
    GuestReady,
    ListVms,
    Migrate,
    MigrationOutcome,
    MigrationSample,
    MigrationSettings,
    PrepareIncoming,
    Release,
    Run,
    VmCont,
    VmInfo,
    VmSpec,
    VmStart,
    VmStatus,
    VmWaitReady,
    VmWaitStatus,
)
from testbed.scenarios.memory import compare_ram

LOG = logging.getLogger(__name__)

MIGRATION_PORT = 4321
SHM_PATH = "/dev/shm/aeshmem"
UNLIMITED_BANDWIDTH = 100 * 1024**3
PAUSED = ("paused", "postmigrate", "inmigrate", "finish-migrate", "prelaunch")


@dataclass(frozen=True)
class GuestRequest:
    arch: str = "armv7"
    mem_mb: int = 512
    smp: int = 1
    accel: str = "auto"
    incoming: bool = False
    shm_size: str | None = None
    fresh_disk: bool = False

    def validate(self) -> None:
        arch = get_arch(self.arch)
        if not 64 <= self.mem_mb <= arch.max_mem_mb:
            raise UserError(
                f"--mem {self.mem_mb} is out of range for {arch.name}",
                f"use 64 to {arch.max_mem_mb} MB",
            )
        if not 1 <= self.smp <= 8:
            raise UserError(f"--smp {self.smp} is out of range", "use 1 to 8")


@dataclass(frozen=True)
class GuestRow:
    node: str
    vm: VmInfo
    uptime_seconds: float


def board(lab: Lab, node: str) -> str:
    found = lab.topology.node(node)
    if found.role != "board":
        boards = ", ".join(b.name for b in lab.topology.boards)
        raise UserError(f"{node} is not a board", f"use one of {boards}")
    return node


def disk_url(lab: Lab, arch: str) -> tuple[str, str]:
    topo = lab.topology
    image = f"root-{arch}.img"
    return f"nfs://{topo.nfs.address}/srv/mnt/{image}", f"/srv/mnt/{image}"


def start_guest(
    lab: Lab, node: str, request: GuestRequest, accel: str, on_step: Callable[[str], None]
) -> tuple[VmInfo, GuestReady | None]:
    """The seed's VM on ``node``: root disk over NFS (a pristine copy goes onto the export
    first if there is none, or with ``fresh_disk``), tap0, the shared MAC."""
    board(lab, node)
    topo = lab.topology
    running = lab.call(node, ListVms()).vms
    if running:
        raise UserError(
            f"{node} already runs a guest (QEMU pid {running[0].pid})",
            f"stop it first: testbed guest stop {node}",
        )
    url, path = disk_url(lab, request.arch)
    exists = lab.call(topo.nfs.name, Run(["test", "-f", path])).code == 0
    if request.incoming and not exists:
        raise UserError(
            f"there is no root disk {path} on the NFS server for the incoming guest",
            "start the source guest first (testbed guest start gauss-a)",
        )
    if not request.incoming and (request.fresh_disk or not exists):
        on_step(f"pristine root disk {path} onto the NFS export")
        copy = lab.call(
            node,
            Run(
                [
                    "qemu-img",
                    "convert",
                    "-f",
                    "raw",
                    "-O",
                    "raw",
                    f"/opt/testbed/guest/{request.arch}/rootfs.ext3",
                    url,
                ]
            ),
        )
        if copy.code != 0:
            raise UserError(f"cannot copy the root disk to {url}: {copy.stderr.strip()}")
    spec = VmSpec(
        arch=request.arch,
        accel=accel,
        mem_mb=request.mem_mb,
        smp=request.smp,
        disk=url,
        tap=topo.node(node).taps[0].name,
        mac=topo.guest.mac,
        guest_ip=topo.guest.address,
        guest_gateway=topo.guest.gateway,
        incoming=f"tcp:0:{MIGRATION_PORT}" if request.incoming else None,
        paused=request.incoming,
        shm_path=SHM_PATH if request.shm_size else None,
        shm_size=request.shm_size or "1M",
    )
    info = lab.call(node, VmStart(spec))
    lab.call(node, Release(vm=spec.name))  # it outlives this command
    if request.incoming:
        lab.call(node, PrepareIncoming())
        return info, None
    on_step(f"QEMU {info.qemu_version} ({info.accel}) started, waiting for the guest")
    return info, lab.call(node, VmWaitReady(timeout=180))


def list_guests(lab: Lab) -> list[GuestRow]:
    now = time.time()
    rows = []
    for node in lab.topology.boards:
        for vm in lab.call(node.name, ListVms()).vms:
            rows.append(GuestRow(node.name, vm, round(now - vm.started_at, 1)))
    return rows


@dataclass(frozen=True)
class ManualMigration:
    source: str
    destination: str
    destination_started: bool
    outcome: MigrationOutcome
    memory: MemoryObservation | None
    destination_status: str


def migrate(
    lab: Lab,
    src: str,
    dst: str,
    max_bandwidth: int | None,
    verify: bool,
    on_step: Callable[[str], None],
    on_sample: Callable[[MigrationSample], None],
) -> ManualMigration:
    board(lab, src)
    board(lab, dst)
    if src == dst:
        raise UserError("source and destination are the same board", "give two boards")
    sources = lab.call(src, ListVms()).vms
    if not sources:
        raise UserError(f"no guest runs on {src}", f"start one: testbed guest start {src}")
    source = sources[0]
    targets = lab.call(dst, ListVms()).vms
    started = False
    if not targets:
        spec = source.spec
        on_step(f"destination QEMU on {dst} (-incoming tcp:0:{MIGRATION_PORT}, -S)")
        start_guest(
            lab,
            dst,
            GuestRequest(
                spec.arch,
                spec.mem_mb,
                spec.smp,
                spec.accel,
                incoming=True,
                shm_size=spec.shm_size if spec.shm_path else None,
            ),
            source.accel,
            on_step,
        )
        started = True
    elif targets[0].spec.incoming is None:
        raise UserError(
            f"{dst} runs a guest that is not waiting for a migration",
            f"stop it (testbed guest stop {dst}) or start it with --incoming",
        )
    uri = f"tcp:{lab.topology.node(dst).address}:{MIGRATION_PORT}"
    on_step(f"{src} -> {dst}: migrate {uri}")
    from testbed import codec

    outcome = lab.call(
        src,
        Migrate(uri, MigrationSettings(max_bandwidth=max_bandwidth or UNLIMITED_BANDWIDTH)),
        on_event=lambda event: on_sample(codec.from_json(MigrationSample, event)),
    )
    memory = None
    status = "?"
    if outcome.status == "completed":
        lab.call(dst, VmWaitStatus(wanted=["paused", "running"]))
        if verify:
            on_step("both paused: comparing guest RAM page by page")
            memory = compare_ram(lab, src, dst)
        status = (
            lab.call(dst, VmCont()).status
            if lab.call(dst, VmStatus()).status == "paused"
            else lab.call(dst, VmStatus()).status
        )
    return ManualMigration(src, dst, started, outcome, memory, status)


def compare(lab: Lab, src: str, dst: str) -> MemoryObservation:
    board(lab, src)
    board(lab, dst)
    for node in (src, dst):
        try:
            status = lab.call(node, VmStatus()).status
        except AgentError as exc:
            raise UserError(f"{node}: {exc.info.message}") from None
        if status == "no vm":
            raise UserError(f"no guest runs on {node}", f"start one: testbed guest start {node}")
        if status not in PAUSED:
            raise UserError(
                f"the guest on {node} is {status}; compare needs both paused",
                f"pause it first: `stop` in testbed monitor {node}",
            )
    return compare_ram(lab, src, dst)
