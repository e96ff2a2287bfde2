"""Seed procedure 1: live migration of a guest whose root disk is on the NFS server,
observed, then judged by the checks of :mod:`testbed.checks.migration`.

Per migration: the destination starts paused (-S) with -incoming; the source's agent
migrates, timing it by QEMU's events; both sides paused, guest RAM is dumped on both and
compared page by page; the destination resumes and the NFS server's route is switched at
once, while echo requests time the guest's first answer; through the old route the guest
must not answer; the loads on the destination must check their passes without a stale
page; writeout's time lines must go on.  A fault (a node that dies, a QEMU that crashes,
a migration that fails) is an observation too: it ends in a verdict, never a traceback."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import cast

import docker

from testbed import codec, futures, images
from testbed.arch import get_arch
from testbed.checks.base import CheckResult, VerdictKind
from testbed.checks.migration import (
    DiskObservation,
    FinalLoad,
    HopObservation,
    LoadObservation,
    MemoryObservation,
    MigrationObservations,
    NetworkObservation,
    SourceAfterFailure,
    WriteoutObservation,
    judge,
    older_stamp,
    outage_ms,
    switch_to_reply_ms,
)
from testbed.errors import Interrupted, UserError
from testbed.lab.agent_client import AgentError
from testbed.lab.lab import Lab
from testbed.loads import (
    STAMP_MAGICS,
    LoadSpec,
    LoadStatus,
    check_cpus,
    check_fits,
    ensure_unique_idents,
    parse_load,
    parse_load_output,
    pass_seconds,
)
from testbed.matrix.records import Cell, IterationSample, MigrationTrace
from testbed.node.accel import ACCELS
from testbed.protocol import (
    ConsoleRead,
    ConsoleSend,
    ConsoleWaitFor,
    GuestReady,
    Migrate,
    MigrationOutcome,
    MigrationSample,
    MigrationSettings,
    PrepareIncoming,
    Probe,
    RamFind,
    RamPeek,
    RamPoke,
    Release,
    RouteReplace,
    Run,
    VmCont,
    VmSpec,
    VmStart,
    VmStatus,
    VmStop,
    VmWaitReady,
    VmWaitStatus,
    WaitLoadPasses,
)
from testbed.rates import parse_rate
from testbed.scenarios.byhand import disk_url
from testbed.scenarios.common import (
    FAULTS,
    CleanupReport,
    KnownDefectRef,
    LabRun,
    decide,
    fault_text,
    node_died,
    refuse_conflicting_vm,
)
from testbed.scenarios.injections import Injections
from testbed.scenarios.memory import compare_ram
from testbed.topology import Node
from testbed.wait import WaitTimeout, wait_until

LOG = logging.getLogger(__name__)

MIGRATION_PORT = 4321
GDB_PORT = 1234
UNLIMITED_BANDWIDTH = 100 * 1024**3  # bytes/s: QEMU's own cap (128 MiB/s on 7.2) must not limit
PEEK_LIMIT = 32  # differing pages whose stamps are decoded and reported
OLD_ROUTE_PROBE_S = 0.3
RESUMED_MARK = "testbed-resumed-"  # + the migration's number, printed by the guest's shell
RESUMED_MARK_WAIT = 30.0
_WRITEOUT = re.compile(r"writeout: (\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")

StepCallback = Callable[[str], None]
ProgressCallback = Callable[[MigrationSample], None]


@dataclass(frozen=True)
class MigrationParams:
    arch: str = "armv7"
    loads: tuple[str, ...] = ("seed:16384:512:50",)
    mem_mb: int = 512
    smp: int = 1
    bandwidth: str | None = None  # tc tbf on the boards' lab link
    round_trips: int = 0
    accel: str = "auto"
    suite: str = images.DEFAULT_SUITE
    lab: str = "gauss"
    topology_file: str | None = None
    passes_before: int = 1  # full load passes before migrating
    passes_after: int = 2  # passes the destination must check with no stale page
    hold: float = 0.0  # seconds of iterating at downtime-limit 1 ms before converging
    migration_timeout: float = 600.0
    stall_timeout: float = 15.0  # no progress this long: the migration is cancelled
    retries: int = 0  # a failed migration is tried again this many times
    inject: Injections = field(default_factory=Injections)
    keep: bool = False  # leave the lab and the last guest running

    def load_specs(self) -> list[LoadSpec]:
        return ensure_unique_idents([parse_load(text) for text in self.loads])

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
        if not self.loads:
            raise UserError("no load given", "give at least one --load (e.g. seed)")
        specs = self.load_specs()
        check_fits(specs, self.mem_mb)
        check_cpus(specs, self.smp)
        if self.round_trips < 0 or self.retries < 0:
            raise UserError("--round-trips and --retries must be 0 or more")
        if not 0 <= self.hold <= 600:
            raise UserError(f"--hold {self.hold:g} is out of range", "use 0 to 600 seconds")
        if self.stall_timeout <= 0:
            raise UserError("--stall-timeout must be positive")
        page = self.inject.corrupt_page
        if page is not None and not 0 <= page < self.mem_mb * 256:
            raise UserError(
                f"--corrupt-page {page} is outside the guest's RAM",
                f"use 0 to {self.mem_mb * 256 - 1}",
            )
        if self.bandwidth is not None:
            try:
                parse_rate(self.bandwidth)
            except ValueError as exc:
                raise UserError(f"--bandwidth: {exc}") from None
        images.check_suite(self.suite)

    @property
    def pass_wait(self) -> float:
        """Seconds to allow for one pass of the slowest load (at least 30)."""
        seconds = [pass_seconds(spec) or 1.0 for spec in self.load_specs()]
        return max(30.0, 6 * max(seconds) + 20)


# -- results -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MigrationFigures:
    status: str
    error: str
    total_ms: int | None
    downtime_ms: int | None
    setup_ms: int | None
    transferred_bytes: int
    throughput_mbps: float
    dirty_sync_count: int
    dirty_pages_rate: int
    normal_pages: int
    zero_pages: int
    expected_downtime_ms: int | None
    held_seconds: float
    syncs_while_holding: int
    link_fraction: float | None
    started_at: float
    ended_at: float
    switchover_at: float | None  # the source's STOP event


@dataclass(frozen=True)
class NetworkFigures:
    reachable_before_switch: bool
    reachable_after_switch: bool
    outage_ms: float | None  # destination resumed -> first echo reply at the NFS server
    switch_to_reply_ms: float | None
    switch_kernel_ms: float | None


@dataclass(frozen=True)
class HopResult:
    index: int
    source: str
    destination: str
    attempt: int
    verdict: str
    failures: list[str]
    fault: str | None
    migration: MigrationFigures | None
    memory: MemoryObservation | None
    loads: list[LoadObservation]
    writeout: WriteoutObservation | None
    network: NetworkFigures | None
    source_after_failure: SourceAfterFailure | None
    iterations: list[IterationSample]


@dataclass(frozen=True)
class MigrationResult:
    scenario: str
    arch: str
    qemu_version: str
    qemu_package: str
    accel: str
    smp: int
    loads: list[str]
    verdict: VerdictKind
    known_defect: KnownDefectRef | None
    first_failure: str
    failures: list[str]
    checks: list[CheckResult]
    migrations: list[HopResult]
    final_loads: list[FinalLoad]
    disk: DiskObservation | None
    boot: GuestReady | None
    fault: str | None
    wall_seconds: float
    cleanup: str
    params: MigrationParams

    def traces(self) -> list[MigrationTrace]:
        out = []
        for hop in self.migrations:
            m = hop.migration
            if m is None:
                continue
            out.append(
                MigrationTrace(
                    index=hop.index,
                    # a migration that did not complete has no QEMU times: its wall time, and
                    # no downtime (the source never stopped)
                    total_ms=float(
                        m.total_ms
                        if m.total_ms is not None
                        else round((m.ended_at - m.started_at) * 1000)
                    ),
                    downtime_ms=float(m.downtime_ms or 0),
                    converged=m.status == "completed",
                    dirty_sync_count=m.dirty_sync_count,
                    link_bps=parse_rate(self.params.bandwidth) if self.params.bandwidth else None,
                    load_dirty_rate_bps=nominal_dirty_rate(self.params.load_specs()),
                    iterations=hop.iterations,
                )
            )
        return out


def switchover_passes(src_text: str, before_mark: str) -> dict[str, int]:
    """Passes each load had completed at the switchover, as far as the consoles tell:
    its newest line on the source's console or on the destination's before the mark
    (a line in flight in the guest's tty at the pause, or one written right after the
    resume: counting from it only makes the wait longer)."""
    passes: dict[str, int] = {}
    for text in (src_text, before_mark):
        for ident, log in parse_load_output(text).items():
            if log.last is not None:
                passes[ident] = max(passes.get(ident, 0), log.last.passes)
    return passes


def nominal_dirty_rate(loads: list[LoadSpec]) -> float | None:
    """Bits per second the loads dirty by design (only the seed load has a rate)."""
    total = 0.0
    for spec in loads:
        if spec.mode != "seed" or not spec.period_ms:
            return None
        total += spec.burst * 4096 * 8 / (spec.period_ms / 1000)
    return total


def iterations(samples: list[MigrationSample], started_at: float) -> list[IterationSample]:
    """One point per dirty-sync round (the last sample of each), for guestperf's plot."""
    by_pass: dict[int, MigrationSample] = {}
    for s in samples:
        by_pass[s.dirty_sync_count] = s
    return [
        IterationSample(
            t_ms=round((s.at - started_at) * 1000, 1),
            pass_no=n,
            transferred_bytes=s.transferred,
            remaining_bytes=s.remaining,
            dirty_rate_pages_s=float(s.dirty_pages_rate),
            mbps=s.mbps,
        )
        for n, s in sorted(by_pass.items())
    ]


# -- the procedure -----------------------------------------------------------------------------
class MigrationScenario:
    def __init__(
        self,
        client: docker.DockerClient,
        params: MigrationParams,
        on_step: StepCallback | None = None,
        on_progress: ProgressCallback | None = None,
        beside: threading.Event | None = None,
    ) -> None:
        """``beside``: this run shares an up lab with runs beside it; setting the event
        stops it as a Ctrl-C would (see :class:`LabRun`)."""
        params.validate()
        self.client = client
        self.params = params
        self.step = on_step or (lambda text: LOG.info("%s", text))
        self.progress = on_progress or (lambda sample: None)
        self.run_ = LabRun.of(client, params, self.step, beside)
        self.lab: Lab = self.run_.lab
        self.specs = params.load_specs()
        self.versions = ("", "", "")
        self.boot: GuestReady | None = None
        self.disk_url = ""
        self.disk_path = ""
        self.artifacts: dict[str, str] = {}
        self.cell: Cell | None = None

    def run(self) -> MigrationResult:
        from testbed.platforms import board_privileges_for

        p = self.params
        started = time.monotonic()
        try:
            privileges, accel = board_privileges_for(self.client, p.accel, p.arch, p.suite)
            self.run_.up(p.bandwidth, privileges)
            self.step(
                f"lab {p.lab}: up"
                + (f", boards' link shaped to {p.bandwidth}" if p.bandwidth else "")
            )
            observations = self.observe(accel)
        except KeyboardInterrupt:
            raise Interrupted(self.run_.finish().summary()) from None
        except BaseException:
            self.run_.finish()
            raise
        cleanup = self.run_.finish()
        return self.judge(observations, cleanup, round(time.monotonic() - started, 1))

    # -- observing -------------------------------------------------------------------------
    def observe(self, accel: str) -> MigrationObservations:
        p = self.params
        topo = self.lab.topology
        source, destination = topo.boards[0], topo.boards[1]
        self.disk_url, self.disk_path = disk_url(self.lab, p.arch)
        gdb = bool(p.inject and p.inject.needs_gdb)
        for board in (source, destination):
            # the widest spec this run starts there: a destination's
            wanted = self.spec(board, incoming=True, accel=accel, gdb=gdb)
            refuse_conflicting_vm(self.lab, board.name, wanted, p.lab)
        hops: list[HopObservation] = []
        try:
            self.start_source(source, accel)
        except FAULTS as exc:
            return MigrationObservations(
                [], [], None, fault_text(self.lab, source.name, "source", "the guest's start", exc)
            )
        plan = [(source, destination), (destination, source)] * p.round_trips or [
            (source, destination)
        ]
        final = source
        for index, (src, dst) in enumerate(plan):
            for attempt in range(1, p.retries + 2):
                hop = self.hop(index, src, dst, attempt)
                hops.append(hop)
                if hop.completed or attempt > p.retries or not self.retry_possible(hop):
                    break
                self.step(
                    f"migration {index + 1}: retrying (attempt {attempt + 1}) after healing the lab"
                )
                self.heal()
            if not hops[-1].completed:
                final = src
                break
            final = dst
        final_loads, disk, fault = self.finish(final.name, hops)
        return MigrationObservations(
            hops, final_loads, disk, fault, kept_running=self.params.keep and fault is None
        )

    def start_source(self, source: Node, accel: str) -> None:
        p = self.params
        self.lab.switch_route(source.name)  # the seed's starting state
        self.step(f"pristine root disk {PurePosixPath(self.disk_path).name} onto the NFS export")
        copy = self.lab.call(
            source.name,
            Run(
                [
                    "qemu-img",
                    "convert",
                    "-f",
                    "raw",
                    "-O",
                    "raw",
                    f"/opt/testbed/guest/{p.arch}/rootfs.ext3",
                    self.disk_url,
                ]
            ),
        )
        if copy.code != 0:
            raise UserError(f"cannot copy the root disk to {self.disk_url}: {copy.stderr.strip()}")
        self.step(
            f"source QEMU on {source.name}: {p.arch}, -m {p.mem_mb}, -smp {p.smp}, disk over nfs://"
        )
        info = self.lab.call(source.name, VmStart(self.spec(source, incoming=False, accel=accel)))
        self.versions = (info.qemu_version, info.qemu_package, info.accel)
        self.cell = Cell(
            scenario="migration",
            suite=p.suite,
            arch=p.arch,
            smp=p.smp,
            load="+".join(str(s) for s in self.specs),
            accel=info.accel,
            hold_s=p.hold,
            bandwidth=p.bandwidth,
        )
        ready = self.lab.call(source.name, VmWaitReady(timeout=180))
        self.boot = ready
        if ready.root != "disk":
            raise UserError(f"the guest did not boot from the NFS disk (root={ready.root})")
        self.step(
            f"guest ready after {ready.seconds:.1f} s ({ready.arch}, root on the NFS "
            f"disk); starting {', '.join(s.guest_command() for s in self.specs)} and "
            "writeout.sh"
        )
        for spec in self.specs:
            self.lab.call(source.name, ConsoleSend(f"{spec.guest_command()} &\n"))
        self.lab.call(source.name, ConsoleSend("writeout.sh &\n"))
        self.lab.call(
            source.name,
            WaitLoadPasses({s.ident: p.passes_before for s in self.specs}, timeout=p.pass_wait),
        )

    def spec(self, node: Node, incoming: bool, accel: str, gdb: bool = False) -> VmSpec:
        p = self.params
        topo = self.lab.topology
        return VmSpec(
            arch=p.arch,
            accel=accel,
            mem_mb=p.mem_mb,
            smp=p.smp,
            disk=self.disk_url,
            tap=node.taps[0].name,
            mac=topo.guest.mac,
            guest_ip=topo.guest.address,
            guest_gateway=topo.guest.gateway,
            incoming=f"tcp:0:{MIGRATION_PORT}" if incoming else None,
            paused=incoming,
            gdb_port=GDB_PORT if gdb else None,
        )

    def retry_possible(self, hop: HopObservation) -> bool:
        """A retry needs the source guest, alive and running."""
        src = hop.source_after_failure
        return src is not None and src.status == "running"

    def heal(self) -> None:
        p = self.params
        from testbed.platforms import board_privileges_for

        privileges, _ = board_privileges_for(self.client, p.accel, p.arch, p.suite)
        self.lab.up(
            bandwidth=p.bandwidth,
            on_step=lambda text: LOG.info("%s", text),
            board_privileges=privileges,
        )

    def hop(self, index: int, src: Node, dst: Node, attempt: int) -> HopObservation:
        p = self.params
        inject = p.inject if index == 0 and attempt == 1 else None
        what = f"migration {index + 1}"
        self.step(f"{what}: destination QEMU on {dst.name} (-incoming tcp:0:{MIGRATION_PORT}, -S)")
        try:
            self.lab.call(
                dst.name,
                VmStart(
                    self.spec(
                        dst,
                        incoming=True,
                        accel=self.versions[2],
                        gdb=bool(inject and inject.needs_gdb),
                    )
                ),
            )
            self.lab.call(dst.name, PrepareIncoming())
        except FAULTS as exc:
            fault = fault_text(self.lab, dst.name, "destination", what, exc)
            return self.failed_hop(index, src, dst, attempt, None, fault)
        uri = f"tcp:{dst.address}:{MIGRATION_PORT}"
        self.step(
            f"{what}: {src.name} -> {dst.name}: migrate {uri}"
            + (f" (holding {p.hold:g} s at downtime-limit 1 ms)" if p.hold else "")
        )
        settings = MigrationSettings(
            max_bandwidth=UNLIMITED_BANDWIDTH,
            hold_seconds=p.hold,
            stall_timeout=p.stall_timeout,
            timeout=p.migration_timeout,
        )

        def on_event(event: codec.Json) -> None:
            self.progress(codec.from_json(MigrationSample, event))

        try:
            outcome = self.lab.call(src.name, Migrate(uri, settings), on_event=on_event)
        except FAULTS as exc:
            fault = fault_text(self.lab, src.name, "source", what, exc)
            return self.failed_hop(index, src, dst, attempt, None, fault)
        if outcome.status != "completed":
            return self.failed_hop(
                index, src, dst, attempt, outcome, self.why_failed(src, dst, what, outcome)
            )
        try:
            return self.verify(index, src, dst, attempt, outcome, inject)
        except FAULTS as exc:
            node = dst.name if node_died(self.lab, dst.name) else src.name
            role = "destination" if node == dst.name else "source"
            fault = fault_text(self.lab, node, role, f"the checks after {what}", exc)
            return HopObservation(index, src.name, dst.name, attempt, outcome, fault)

    def why_failed(self, src: Node, dst: Node, what: str, outcome: MigrationOutcome) -> str | None:
        """The fault behind a failed migration, when a node or a QEMU is gone."""
        dead = node_died(self.lab, dst.name)
        if dead:
            return f"destination {dst.name} died during {what}: {dead}"
        dead = node_died(self.lab, src.name)
        if dead:
            return f"source {src.name} died during {what}: {dead}"
        try:
            if self.lab.call(src.name, VmStatus()).status == "exited":
                return f"source QEMU on {src.name} died during {what}: {outcome.error}"
            cancelled = "cancelled" in outcome.error  # by us (stall, timeout): dst QEMU quits
            if not cancelled and self.lab.call(dst.name, VmStatus()).status == "exited":
                return f"destination QEMU on {dst.name} died during {what}"
        except FAULTS as exc:
            LOG.info("cannot tell why the migration failed: %s", exc)
        return None

    def failed_hop(
        self,
        index: int,
        src: Node,
        dst: Node,
        attempt: int,
        outcome: MigrationOutcome | None,
        fault: str | None,
    ) -> HopObservation:
        """The destination goes; the source guest must simply go on, without a stale page."""
        what = f"migration {index + 1}"
        self.step(f"{what}: {fault or (outcome.status + ': ' + outcome.error if outcome else '')}")
        if node_died(self.lab, dst.name) is None:
            try:
                self.lab.call(dst.name, VmStop())
            except FAULTS:
                pass
        try:
            state = self.lab.call(src.name, VmStatus())
            status = state.status
            if status in ("paused", "postmigrate"):
                status = self.lab.call(src.name, VmCont()).status
            stale = None
            passes = 0
            if status == "running":
                before = self.lab.call(src.name, ConsoleRead()).text
                base = parse_load_output(before)
                at_failure = switchover_passes(before, "")
                targets = {s.ident: at_failure.get(s.ident, 0) + 1 for s in self.specs}
                after = self.lab.call(
                    src.name,
                    WaitLoadPasses(
                        targets, offset=len(before.encode()), timeout=self.params.pass_wait
                    ),
                )
                logs = parse_load_output(after.text)
                stale = sum(
                    log.last.stale
                    - (cast(LoadStatus, base[i].last).stale if i in base and base[i].last else 0)
                    for i, log in logs.items()
                    if log.last
                )
                passes = min((log.last.passes for log in logs.values() if log.last), default=0)
            source_after = SourceAfterFailure(status, stale, passes)
        except FAULTS as exc:
            source_after = SourceAfterFailure(
                f"gone ({fault_text(self.lab, src.name, 'source', 'the check', exc)})", None, 0
            )
        self.step(f"{what}: source guest {source_after.status}, stale={source_after.stale}")
        return HopObservation(
            index, src.name, dst.name, attempt, outcome, fault, source_after_failure=source_after
        )

    def verify(
        self,
        index: int,
        src: Node,
        dst: Node,
        attempt: int,
        outcome: MigrationOutcome,
        inject: Injections | None,
    ) -> HopObservation:
        p = self.params
        what = f"migration {index + 1}"
        self.lab.call(dst.name, VmWaitStatus(wanted=["paused"]))
        src_text = self.lab.call(src.name, ConsoleRead()).text  # up to the switchover
        before = parse_load_output(src_text)
        self.step(
            f"{what}: completed in {outcome.total_ms} ms, downtime {outcome.downtime_ms} "
            f"ms; comparing guest RAM page by page (both paused)"
        )
        memory = self.compare(src.name, dst.name, inject)

        # the destination runs on; the NFS server's route follows at once
        resumed = self.lab.call(dst.name, VmCont())
        if inject and inject.time_jump:
            self.lab.call(
                dst.name,
                ConsoleSend(f"date -s @$(( $(date +%s) + {inject.time_jump} )) >/dev/null\n"),
            )
        if inject and inject.no_route_switch:
            probe = self.lab.call(
                self.lab.topology.nfs.name, Probe(self.lab.topology.guest.ip, 2.0, until_reply=True)
            )
            switched = None
            first_reply = probe.first_reply_at
            kernel_ms = None
        else:
            switch = self.lab.switch_route(dst.name, probe=True)
            switched, first_reply, kernel_ms = (
                switch.switched_at,
                switch.first_reply_at,
                switch.kernel_ms,
            )
        if inject and inject.split_brain:
            self.step(f"negative control: resuming the source on {src.name} (split brain)")
            self.lab.call(src.name, VmCont())
        # the shell prints a mark: every load line after it was written after the resume
        # (typed after the switch, which must follow the resume at once)
        self.lab.call(dst.name, ConsoleSend(f"echo {RESUMED_MARK}$(({index + 1}))\n"))
        with ThreadPoolExecutor(2) as pool:
            old_route = pool.submit(self.probe_old_route, src, dst, switched is not None)
            passes = pool.submit(self.wait_passes_after_resume, dst, index, src_text)
            sent, replies = futures.result(old_route)
            try:
                at_switchover, after_text = futures.result(passes)
            except AgentError as exc:
                if exc.kind != "timeout":
                    raise
                # a load that stops reporting (its own memory may be what was lost) is an
                # observation: its passes stay short, and load-stale says so
                # (the wait's message says which ran out: the resume mark or the passes)
                self.step(
                    f"{what}: the wait for the loads' passes on {dst.name} ran out: "
                    f"{exc.info.message}"
                )
                after_text = self.lab.call(dst.name, ConsoleRead()).text
                at_switchover = switchover_passes(src_text, "")
        self.lab.call(src.name, VmStop())  # frees the source's tap for a trip back
        network = NetworkObservation(
            resumed.at, switched, first_reply, kernel_ms, src.name, sent, replies
        )
        after = parse_load_output(after_text)
        loads = []
        for spec in self.specs:
            b = before.get(spec.ident)
            a = after.get(spec.ident)
            bl, al = (b.last if b else None), (a.last if a else None)
            loads.append(
                LoadObservation(
                    spec.ident,
                    spec.mode,
                    bl.stale if bl else 0,
                    # no line on the destination: no progress from where the source paused
                    al.stale if al else (bl.stale if bl else 0),
                    at_switchover.get(spec.ident, 0),
                    al.passes if al else (bl.passes if bl else 0),
                    al.checked if al else 0,
                    a.stale_pages if a else [],
                    p.passes_after,
                )
            )
        try:  # writeout prints every second: give its first line on the destination time
            self.lab.call(dst.name, ConsoleWaitFor(r"writeout: \d+ .*\n", timeout=10))
        except AgentError as exc:
            if exc.kind != "timeout":
                raise
        old_lines = [int(m.group(1)) for m in _WRITEOUT.finditer(src_text)]
        dst_text = self.lab.call(dst.name, ConsoleRead()).text
        new_lines = [int(m.group(1)) for m in _WRITEOUT.finditer(dst_text)]
        writeout = WriteoutObservation(
            old_lines[-1] if old_lines else None,
            new_lines[0] if new_lines else None,
            len(new_lines),
            all(b >= a for a, b in zip(new_lines, new_lines[1:], strict=False)),
            outcome.downtime_ms,
            max((b - a for a, b in zip(new_lines, new_lines[1:], strict=False)), default=None),
        )
        hop = HopObservation(
            index, src.name, dst.name, attempt, outcome, None, memory, loads, writeout, network
        )
        self.step(
            f"{what}: {len(memory.differing_pages)} page(s) differ; outage "
            f"{outage_ms(network)} ms ({switch_to_reply_ms(network)} ms after the switch); "
            f"old route {replies}/{sent} answered; stale "
            f"{sum(x.new_stale for x in loads)}"
        )
        return hop

    def wait_passes_after_resume(
        self, dst: Node, index: int, src_text: str
    ) -> tuple[dict[str, int], str]:
        """Wait until every load has completed ``passes_after`` passes after the resume.

        A status line that the guest wrote just before the switchover may still sit in
        its tty when it pauses, and reach the console only from the destination: counted
        from the source's last line, it could end the wait before a single pass had run
        on the destination.  So the passes are counted from the shell's mark, printed
        after the resume: lines before it (on the source, or in flight) give the passes
        at the switchover.  Returns those, and the destination's console up to the end
        of the wait."""
        pattern = f"{RESUMED_MARK}{index + 1}(?!\\d)"
        mark = self.lab.call(dst.name, ConsoleWaitFor(pattern, timeout=RESUMED_MARK_WAIT))
        found = re.search(pattern, mark.text)
        assert found is not None  # the agent matched it
        before_mark = mark.text[: found.end()]
        # in bytes, counted back from the end (the text was decoded with replacements)
        cut = mark.end - len(mark.text[found.end() :].encode())
        at_switchover = switchover_passes(src_text, before_mark)
        targets = {
            s.ident: at_switchover.get(s.ident, 0) + self.params.passes_after for s in self.specs
        }
        after = self.lab.call(
            dst.name,
            WaitLoadPasses(
                targets,
                offset=cut,
                timeout=self.params.passes_after * self.params.pass_wait,
            ),
        )
        return at_switchover, before_mark + after.text

    def probe_old_route(self, src: Node, dst: Node, switched: bool) -> tuple[int, int]:
        """Through the NFS server's old route (to the source board) the migrated guest
        must not answer; then the route goes back to the destination."""
        topo = self.lab.topology
        nfs, guest = topo.nfs.name, topo.guest.ip
        self.lab.call(nfs, RouteReplace(f"{guest}/32", src.address))
        try:
            result = self.lab.call(nfs, Probe(guest, OLD_ROUTE_PROBE_S))
        finally:
            if switched:
                self.lab.call(nfs, RouteReplace(f"{guest}/32", dst.address, probe=guest))
        return result.sent, result.replies

    def compare(self, src: str, dst: str, inject: Injections | None) -> MemoryObservation:
        magics = {str(mode): value for mode, value in STAMP_MAGICS.items()}
        if inject and (inject.corrupt_page is not None or inject.stale_load_page):
            return compare_ram(
                self.lab, src, dst, lambda: self.inject_memory(src, dst, inject, magics)
            )
        return compare_ram(self.lab, src, dst)

    def inject_memory(self, src: str, dst: str, inject: Injections, magics: dict[str, int]) -> None:
        if inject.corrupt_page is not None:
            poke = self.lab.call(dst, RamPoke(inject.corrupt_page, "5a" * 32))
            self.step(
                f"negative control: page {inject.corrupt_page} altered on {dst} "
                f"({poke.address}, VM {poke.status_after})"
            )
        if inject.stale_load_page:
            # loads of one mode share their stamp's magic: the first of each mode is aged
            firsts: dict[str, LoadSpec] = {}
            for spec in self.specs:
                firsts.setdefault(spec.mode, spec)
            for spec in firsts.values():
                self.age_one_page(src, dst, spec, magics)

    def age_one_page(self, src: str, dst: str, spec: LoadSpec, magics: dict[str, int]) -> None:
        """Give one page of ``spec``'s load an older stamp on the paused destination, as a
        lost dirty page would show it (load-stale must then fail for that load)."""
        head = STAMP_MAGICS[spec.mode].to_bytes(8, "little")
        found = self.lab.call(src, RamFind(head.hex(), limit=64)).pages
        if not found:
            raise UserError(f"negative control: no page of load {spec.ident} found in RAM")
        page = found[len(found) // 2]
        current = bytes.fromhex(self.lab.call(src, RamPeek([page])).heads[str(page)])
        stamp = older_stamp(current, magics)
        if stamp is None:
            raise UserError(f"negative control: page {page} holds no usable stamp")
        poke = self.lab.call(dst, RamPoke(page, stamp.hex()))
        self.step(
            f"negative control: page {page} ({poke.address}) given an older stamp "
            f"of load {spec.ident} on {dst}"
        )

    def finish(
        self, node: str, hops: list[HopObservation]
    ) -> tuple[list[FinalLoad], DiskObservation | None, str | None]:
        """Stop the guest programs, power the guest off, and check the disk."""
        p = self.params
        final_loads: list[FinalLoad] = []
        fault = None
        try:
            text = self.lab.call(node, ConsoleRead())
            if p.keep:  # the guest runs on, for inspection: no power-off, no e2fsck
                self.lab.call(node, Release(vm="guest"))
                self.run_.kept.append(f"the guest on {node}")
                return [], None, None
            self.step(f"stopping the loads and writeout on {node}; powering the guest off")
            jobs = " ".join(f"%{i + 1}" for i in range(len(self.specs) + 1))
            self.lab.call(node, ConsoleSend(f"kill {jobs}; sync\n"))
            for spec in self.specs:
                prefix = (
                    "dirtyram: summary"
                    if spec.ident == "dirtyram"
                    else rf"tbload\[{re.escape(spec.ident)}\]: summary"
                )
                try:
                    self.lab.call(node, ConsoleWaitFor(prefix, offset=text.end, timeout=30))
                except FAULTS as exc:
                    LOG.info("no summary of %s: %s", spec.ident, exc)
            logs = parse_load_output(self.lab.call(node, ConsoleRead(offset=text.end)).text)
            for spec in self.specs:
                log = logs.get(spec.ident)
                summary = log.summary if log else None
                final_loads.append(
                    FinalLoad(
                        spec.ident,
                        summary.result if summary else None,
                        summary.stale if summary else None,
                    )
                )
            self.lab.call(node, ConsoleSend("sync; poweroff -f\n"))
            off = ("exited", "shutting down", "shutdown", "no vm")
            try:
                wait_until(
                    lambda: True if self.lab.call(node, VmStatus()).status in off else None,
                    what=f"power-off of the guest on {node}",
                    timeout=30,
                    interval=0.2,
                )
            except WaitTimeout as exc:  # QMP quit and the signals below end it anyway
                self.step(f"{exc}; stopping its QEMU")
            self.artifacts[f"console-final-{node}.log"] = self.lab.call(node, ConsoleRead()).text
            self.lab.call(node, VmStop())
        except FAULTS as exc:
            fault = fault_text(self.lab, node, "board", "the final steps", exc)
        nfs = self.lab.topology.nfs.name
        try:
            if p.inject.corrupt_disk:
                self.lab.call(
                    nfs, Run(["debugfs", "-w", "-R", "sif <2> links_count 7", self.disk_path])
                )
                self.step("negative control: root inode's link count corrupted")
            fsck = self.lab.call(nfs, Run(["e2fsck", "-fn", self.disk_path]))
            lines = (fsck.stdout + fsck.stderr).strip().splitlines()
            disk = DiskObservation(fsck.code, lines[-8:])
            self.step(f"e2fsck -fn {self.disk_path}: {'clean' if fsck.code == 0 else 'NOT clean'}")
        except FAULTS as exc:
            disk = None
            fault = fault or fault_text(self.lab, nfs, "NFS server", "e2fsck", exc)
        return final_loads, disk, fault

    # -- judging ---------------------------------------------------------------------------
    def judge(
        self, obs: MigrationObservations, cleanup: CleanupReport, wall: float
    ) -> MigrationResult:
        p = self.params
        checks = judge(obs)
        qemu_version, qemu_package, accel = self.versions
        verdict = decide(checks, self.cell, qemu_version, accel)
        hops = []
        for hop in obs.hops:
            own = [c for c in checks if c.subject.startswith(hop.subject) and c.failed]
            hops.append(
                HopResult(
                    index=hop.index,
                    source=hop.source,
                    destination=hop.destination,
                    attempt=hop.attempt,
                    verdict="fail" if own or not hop.completed else "pass",
                    failures=[c.line() for c in own],
                    fault=hop.fault,
                    migration=figures(hop.migration, p.bandwidth) if hop.migration else None,
                    memory=hop.memory,
                    loads=hop.loads,
                    writeout=hop.writeout,
                    network=network_figures(hop.network) if hop.network else None,
                    source_after_failure=hop.source_after_failure,
                    iterations=iterations(hop.migration.samples, hop.migration.started_at)
                    if hop.migration
                    else [],
                )
            )
        return MigrationResult(
            scenario="migration",
            arch=p.arch,
            qemu_version=qemu_version,
            qemu_package=qemu_package,
            accel=accel,
            smp=p.smp,
            loads=[str(s) for s in self.specs],
            verdict=verdict.verdict,
            known_defect=verdict.known_defect,
            first_failure=verdict.first_failure,
            failures=verdict.failures,
            checks=verdict.checks,
            migrations=hops,
            final_loads=obs.final_loads,
            disk=obs.disk,
            boot=self.boot,
            fault=obs.fault,
            wall_seconds=wall,
            cleanup=cleanup.summary(),
            params=p,
        )


def figures(m: MigrationOutcome, bandwidth: str | None) -> MigrationFigures:
    fraction = None
    if bandwidth and m.total_ms:
        fraction = round(m.transferred_bytes * 8 / (m.total_ms / 1000) / parse_rate(bandwidth), 3)
    return MigrationFigures(
        status=m.status,
        error=m.error,
        total_ms=m.total_ms,
        downtime_ms=m.downtime_ms,
        setup_ms=m.setup_ms,
        transferred_bytes=m.transferred_bytes,
        throughput_mbps=m.throughput_mbps,
        dirty_sync_count=m.dirty_sync_count,
        dirty_pages_rate=m.dirty_pages_rate,
        normal_pages=m.normal_pages,
        zero_pages=m.zero_pages,
        expected_downtime_ms=m.expected_downtime_ms,
        held_seconds=m.held_seconds,
        syncs_while_holding=m.syncs_while_holding,
        link_fraction=fraction,
        started_at=m.started_at,
        ended_at=m.ended_at,
        switchover_at=m.stopped_at,
    )


def network_figures(net: NetworkObservation) -> NetworkFigures:
    return NetworkFigures(
        reachable_before_switch=net.old_route_replies > 0,
        reachable_after_switch=net.first_reply_at is not None,
        outage_ms=outage_ms(net),
        switch_to_reply_ms=switch_to_reply_ms(net),
        switch_kernel_ms=net.switch_kernel_ms,
    )
