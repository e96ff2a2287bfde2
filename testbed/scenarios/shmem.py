"""Seed procedure 2: shared-memory replication from QEMU's own dirty log, observed, then
judged by the checks of :mod:`testbed.checks.shmem`.

A guest dirties an ivshmem device whose memory is /dev/shm/aeshmem on gauss-a; the
replication daemon (testbed.node.replicate, a helper of gauss-a's agent) keeps a
destination file in sync from the migration stream, locally or on gauss-b (--remote),
compares at every convergence while QEMU has the VM paused, and, when the guest program
has stopped, converges a last time, compares, resumes the VM and exits."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar, TypeVar

import docker

from testbed import codec, images
from testbed.arch import get_arch
from testbed.checks.base import CheckResult, VerdictKind
from testbed.checks.shmem import ShmemObservations, judge
from testbed.errors import Interrupted, UserError
from testbed.lab.agent_client import AgentError
from testbed.lab.lab import Lab
from testbed.matrix.records import Cell
from testbed.node.accel import ACCELS
from testbed.node.replicate import ReplicationReport
from testbed.protocol import (
    ConsoleRead,
    ConsoleRun,
    ConsoleSend,
    ConsoleWaitFor,
    HelperExit,
    HelperSignal,
    HelperStart,
    HelperWait,
    ReadFile,
    Release,
    Run,
    VmPause,
    VmSpec,
    VmStart,
    VmStatus,
    VmWaitReady,
)
from testbed.scenarios.common import (
    FAULTS,
    CleanupReport,
    KnownDefectRef,
    LabRun,
    ObservedFault,
    decide,
    fault_text,
    node_died,
    refuse_conflicting_vm,
)
from testbed.wait import WaitAborted, wait_until

LOG = logging.getLogger(__name__)
T = TypeVar("T")

SHM_PATH = "/dev/shm/aeshmem"
WORK = "/run/testbed/replica"
REPLICA = f"{WORK}/aeshmem"
RESULT = f"{WORK}/result.json"
CORRUPTED_REPLICA_PAGE = 7  # --inject corrupt-replica: the page of the replica altered
RECEIVER_PORT = 7777
WORKLOADS = ("dirty", "remap")
_SIZE = re.compile(r"^(\d+)([KM])$")
_SUM = re.compile(r"tstaeshm: sum -r (\d+) (\d+)")

StepCallback = Callable[[str], None]


@dataclass(frozen=True)
class ShmemParams:
    arch: str = "armv8"
    shm_size: str = "1M"
    workload: str = "remap"
    duration: float = 10.0
    remote: bool = False
    drop_every: int | None = None  # negative control: the daemon drops every Nth page
    accel: str = "auto"
    mem_mb: int = 512
    suite: str = images.DEFAULT_SUITE
    lab: str = "gauss"
    topology_file: str | None = None
    until_quiet: float = 1.5
    checkpoint_every: float = 3.0
    restart_daemon_after: float | None = None  # kill -9 the daemon then, start a new one
    shm_first: bool = False  # the shared block first in RAM order (QEMU 10.0.2 aborts)
    tamper_region: bool = False  # negative control: the host writes the region at the end
    corrupt_replica: bool = False  # negative control: the replica altered before the final check
    pause_vm: bool = False  # negative control: the VM paused (QMP stop) after the daemon ended
    keep: bool = False
    vm: str = "guest"  # the VM's name on its board (run all: "shmem", beside a migration)

    def validate(self) -> None:
        get_arch(self.arch)
        if self.accel not in ACCELS:
            raise UserError(
                f"unknown accelerator {self.accel!r}", f"use one of {', '.join(ACCELS)}"
            )
        if self.workload not in WORKLOADS:
            raise UserError(
                f"unknown workload {self.workload!r}", f"use one of {', '.join(WORKLOADS)}"
            )
        m = _SIZE.match(self.shm_size)
        size = int(m.group(1)) << (10 if m.group(2) == "K" else 20) if m else 0
        if not m or size < 4096 or size % 4096 or size > 64 << 20:
            raise UserError(
                f"--shm-size {self.shm_size!r} is not a size from 4K to 64M in whole pages",
                "use e.g. 1M (the seed's) or 256K",
            )
        if not 0 < self.duration <= 3600:
            raise UserError(f"--duration {self.duration:g} is out of range", "use 1 to 3600 s")
        if self.drop_every is not None and self.drop_every < 1:
            raise UserError("--drop-every must be 1 or more")
        images.check_suite(self.suite)


@dataclass(frozen=True)
class CheckpointSummary:
    count: int
    exact: int
    inexact: int


@dataclass(frozen=True)
class ShmemResult:
    scenario: str
    arch: str
    qemu_version: str
    accel: str
    workload: str
    verdict: VerdictKind
    known_defect: KnownDefectRef | None
    first_failure: str
    failures: list[str]
    checks: list[CheckResult]
    remote: bool
    rounds: int
    pages_copied: int
    checkpoints: CheckpointSummary
    pages_lost: int  # distinct pages that differed at any checkpoint
    replication_mbps: float
    stop_to_exit_seconds: float | None
    guest_summary: str | None
    guest_sum: str | None
    daemon: ReplicationReport | None
    fault: str | None
    wall_seconds: float
    cleanup: str
    params: ShmemParams


class ShmemScenario:
    # how long the daemon's last round may take once the guest program has ended
    DAEMON_END_TIMEOUT: ClassVar[float] = 60.0

    def __init__(
        self,
        client: docker.DockerClient,
        params: ShmemParams,
        on_step: StepCallback | None = None,
        beside: threading.Event | None = None,
    ) -> None:
        """``beside``: this run shares an up lab with runs beside it; setting the event
        stops it as a Ctrl-C would (see :class:`LabRun`)."""
        params.validate()
        self.client = client
        self.params = params
        self.step = on_step or (lambda text: LOG.info("%s", text))
        self.run_ = LabRun.of(client, params, self.step, beside)
        self.lab: Lab = self.run_.lab
        self.qemu_version = ""
        self.accel = ""
        self.artifacts: dict[str, str] = {}
        self.stop_to_exit: float | None = None
        self.guest_summary: str | None = None

    def run(self) -> ShmemResult:
        from testbed.platforms import board_privileges_for

        p = self.params
        started = time.monotonic()
        try:
            privileges, accel = board_privileges_for(self.client, p.accel, p.arch, p.suite)
            self.run_.up(None, privileges)
            self.step(f"lab {p.lab}: up")
            observations = self.observe(accel)
        except KeyboardInterrupt:
            raise Interrupted(self.run_.finish().summary()) from None
        except BaseException:
            self.run_.finish()
            raise
        cleanup = self.run_.finish()
        return self.judge(observations, cleanup, round(time.monotonic() - started, 1))

    # -- observing -------------------------------------------------------------------------
    def observe(self, accel: str) -> ShmemObservations:
        p = self.params
        topo = self.lab.topology
        self.board, self.peer = topo.boards[0].name, topo.boards[1].name
        spec = VmSpec(
            arch=p.arch,
            name=p.vm,
            accel=accel,
            mem_mb=p.mem_mb,
            shm_path=SHM_PATH,
            shm_size=p.shm_size,
            shm_first=p.shm_first,
        )
        # the peer holds the replica (and the receiver, when remote): a guest of the seed's
        # by-hand shared memory there is in the way as well
        for board in (self.board, self.peer):
            refuse_conflicting_vm(self.lab, board, spec, p.lab)
            self.lab.call(board, Run(["sh", "-c", f"rm -rf {WORK} {SHM_PATH}; mkdir -p {WORK}"]))
        self.step(f"QEMU on {self.board}: {p.arch} with ivshmem-plain on {SHM_PATH} ({p.shm_size})")
        try:
            info = self.lab.call(self.board, VmStart(spec))
            self.qemu_version, self.accel = info.qemu_version, info.accel
            ready = self.lab.call(self.board, VmWaitReady(timeout=120, name=p.vm))
        except FAULTS as exc:
            return self.gone(fault_text(self.lab, self.board, "board", "the guest's start", exc))
        self.step(
            f"guest ready after {ready.seconds:.1f} s (QEMU {info.qemu_version}, {info.accel})"
        )
        remote = None
        try:
            if p.remote:
                remote = f"{topo.node(self.peer).address}:{RECEIVER_PORT}"
                self.lab.call(
                    self.peer,
                    HelperStart(
                        "receiver",
                        [
                            "python3",
                            "-m",
                            "testbed.node",
                            "receive",
                            "--listen",
                            f"0.0.0.0:{RECEIVER_PORT}",
                            "--dest",
                            REPLICA,
                            "--serve-forever",
                        ],
                        ready_port=RECEIVER_PORT,
                    ),
                )
                self.step(f"receiver on {self.peer} at {remote}")
            report = self.replicate(remote)
        except FAULTS as exc:
            return self.gone(self.fault_during_replication(exc))
        return self.after(report)

    def daemon_argv(self, remote: str | None) -> list[str]:
        p = self.params
        argv = [
            "python3",
            "-m",
            "testbed.node",
            "replicate",
            "--qmp",
            f"/run/testbed/vm/{p.vm}/qmp-service.sock",
            "--shm",
            SHM_PATH,
            "--until-quiet",
            f"{p.until_quiet:g}",
            "--checkpoint-every",
            f"{p.checkpoint_every:g}",
            "--result",
            RESULT,
        ]
        argv += ["--remote", remote] if remote else ["--dest", REPLICA]
        if p.drop_every:
            argv += ["--drop-every", str(p.drop_every)]
        if p.corrupt_replica:
            argv += ["--corrupt-final-page", str(CORRUPTED_REPLICA_PAGE)]
        return argv

    def start_daemon(self, remote: str | None) -> None:
        self.lab.call(
            self.board,
            HelperStart("replicate", self.daemon_argv(remote), ready_text="pre-copied", timeout=30),
        )
        self.step(
            f"replication daemon on {self.board}: pre-copy done, "
            f"{'to ' + remote if remote else 'local destination'}"
        )

    def replicate(self, remote: str | None) -> ReplicationReport | None:
        """Daemon, guest program, and the wait for the daemon's result."""
        p = self.params
        self.start_daemon(remote)
        self.step(f"guest: tstaeshm {p.workload} --duration {p.duration:g}")
        offset = self.lab.call(self.board, ConsoleRead(name=p.vm)).end
        command = f"tstaeshm {p.workload} --duration {p.duration:g} &\n"
        self.lab.call(self.board, ConsoleSend(command, name=p.vm))
        started = time.monotonic()
        if p.restart_daemon_after is not None:
            wait = max(0.0, p.restart_daemon_after - (time.monotonic() - started))
            killer = threading.Timer(wait, self.restart_daemon, args=(remote,))
            killer.start()
        try:
            self.wait_program(offset, remote)
        finally:
            if p.restart_daemon_after is not None:
                killer.join()
        stopped = time.monotonic()
        self.guest_summary = _summary(
            self.lab.call(self.board, ConsoleRead(offset=offset, name=p.vm)).text
        )
        self.step("the guest program stopped; waiting for the daemon's last round")
        done = self.wait_daemon(remote)
        self.stop_to_exit = round(time.monotonic() - stopped, 2)
        result = self.lab.call(self.board, ReadFile(RESULT))
        if not result.exists:
            tail = done.log_tail or "no output"
            raise ObservedFault(f"the daemon exited ({done.exit_code}) without a result: {tail}")
        return codec.from_json(ReplicationReport, codec.json_loads(result.text))

    # With a remote receiver, the waits below go in 1 s slices and look at the receiver
    # between them: a receiver that dies never resets the daemon's connection (its end
    # vanishes with its container), so the daemon would sit out its socket timeout with
    # the guest paused for a checkpoint, and the guest program would not end either.
    def wait_program(self, offset: int, remote: str | None) -> None:
        """Until the guest program prints its summary."""
        wanted = ConsoleWaitFor(
            "tstaeshm: summary",
            name=self.params.vm,
            offset=offset,
            timeout=self.params.duration + 120,
        )
        if remote is None:
            self.lab.call(self.board, wanted)
            return

        def summary() -> bool | None:
            try:
                self.lab.call(self.board, replace(wanted, timeout=1))
            except AgentError as exc:
                if exc.kind != "timeout":
                    raise
                return None
            return True

        self.watching_receiver(summary, "the guest program's summary", wanted.timeout)

    def wait_daemon(self, remote: str | None) -> HelperExit:
        """The daemon's exit, after its last round."""
        if remote is None:
            limit = self.DAEMON_END_TIMEOUT
            done = self.lab.call(self.board, HelperWait("replicate", timeout=limit))
            if done.running:
                raise TimeoutError(f"the daemon did not end within {limit:.0f} s: {done.log_tail}")
            return done

        log_tail = "no output"

        def ended() -> HelperExit | None:
            nonlocal log_tail
            done = self.lab.call(self.board, HelperWait("replicate", timeout=1))
            log_tail = done.log_tail or log_tail
            return None if done.running else done

        return self.watching_receiver(
            ended, "the daemon's exit", self.DAEMON_END_TIMEOUT, last=lambda: log_tail
        )

    def watching_receiver(
        self,
        check: Callable[[], T | None],
        what: str,
        timeout: float,
        last: Callable[[], str] = lambda: "nothing",
    ) -> T:
        def receiver_gone() -> str | None:
            dead = node_died(self.lab, self.peer)
            return None if dead is None else f"receiver {self.peer}: {dead}"

        try:
            return wait_until(
                check, what=what, timeout=timeout, last=last, gone=receiver_gone, interval=0
            )
        except WaitAborted as exc:
            raise ObservedFault(exc.why) from None

    def restart_daemon(self, remote: str | None) -> None:
        self.step("killing the daemon (SIGKILL) and starting a new one")
        self.lab.call(self.board, HelperSignal("replicate", "SIGKILL", timeout=5))
        self.start_daemon(remote)

    def fault_during_replication(self, exc: BaseException) -> str:
        if self.params.remote and node_died(self.lab, self.peer):
            return fault_text(self.lab, self.peer, "receiver", "the replication", exc)
        if node_died(self.lab, self.board):
            return fault_text(self.lab, self.board, "board", "the replication", exc)
        if self.lab.call(self.board, VmStatus(name=self.params.vm)).status in (
            "exited",
            "no vm",
        ):
            return f"QEMU on {self.board} died during the replication"
        if isinstance(exc, ObservedFault):
            return str(exc)
        return fault_text(self.lab, self.board, "board", "the replication", exc)

    def gone(self, fault: str) -> ShmemObservations:
        alive, words = self.qemu_state()
        return ShmemObservations(None, alive, words, None, None, fault, self.accel or "tcg")

    def qemu_state(self) -> tuple[bool, str]:
        try:
            vm = self.params.vm
            status = self.lab.call(self.board, VmStatus(name=vm)).status
            log = self.lab.call(self.board, ReadFile(f"/run/testbed/vm/{vm}/qemu.log")).text
        except FAULTS as exc:
            return False, str(exc)
        lines = [line for line in log.strip().splitlines() if line.strip()]
        return status not in ("exited", "no vm"), " | ".join(lines[-2:]) or "no output"

    def after(self, report: ReplicationReport | None) -> ShmemObservations:
        p = self.params
        if p.tamper_region:
            self.lab.call(
                self.board,
                Run(
                    [
                        "sh",
                        "-c",
                        f"printf 'tampered' | dd of={SHM_PATH} "
                        "bs=1 seek=100 conv=notrunc 2>/dev/null",
                    ]
                ),
            )
            self.step("negative control: the host wrote into the region after the final checkpoint")
        if p.pause_vm:
            self.lab.call(self.board, VmPause(name=p.vm))
            self.step("negative control: the VM paused (QMP stop) after the daemon ended")
        vm_status = None
        try:
            vm_status = self.lab.call(self.board, VmStatus(name=p.vm)).status
        except FAULTS as exc:
            LOG.info("no run state: %s", exc)
        output = None
        guest_sum = None
        if vm_status not in (None, "running"):
            output = f"not run: the VM is {vm_status}"
        else:
            try:
                out = self.lab.call(self.board, ConsoleRun("tstaeshm sum", timeout=60, name=p.vm))
                output = out.output
                m = _SUM.search(out.output)
                guest_sum = f"{int(m.group(1)):05d} {m.group(2)}" if m else None
            except FAULTS as exc:
                LOG.info("no guest checksum: %s", exc)
        alive, words = self.qemu_state()
        if p.keep and alive:
            self.lab.call(self.board, Release(vm=p.vm))
            self.run_.kept.append(f"QEMU {p.vm!r} on {self.board}")
        try:
            for name, path in (
                ("console.log", f"/run/testbed/vm/{p.vm}/serial.log"),
                ("qemu.log", f"/run/testbed/vm/{p.vm}/qemu.log"),
                ("daemon.log", "/run/testbed/helpers/replicate.log"),
            ):
                self.artifacts[name] = self.lab.call(self.board, ReadFile(path)).text
        except FAULTS:
            pass
        return ShmemObservations(
            report, alive, words, output, guest_sum, None, self.accel or "tcg", vm_status
        )

    # -- judging ---------------------------------------------------------------------------
    def judge(self, obs: ShmemObservations, cleanup: CleanupReport, wall: float) -> ShmemResult:
        p = self.params
        checks = judge(obs)
        cell = Cell(
            scenario="shmem",
            suite=p.suite,
            arch=p.arch,
            smp=1,
            load=p.workload,
            accel=self.accel or p.accel,
        )
        verdict = decide(checks, cell, self.qemu_version, self.accel)
        r = obs.report
        lost = sorted({page for cp in (r.inexact if r else []) for page in cp.differing_pages})
        return ShmemResult(
            scenario="shmem",
            arch=p.arch,
            qemu_version=self.qemu_version,
            accel=self.accel,
            workload=p.workload,
            verdict=verdict.verdict,
            known_defect=verdict.known_defect,
            first_failure=verdict.first_failure,
            failures=verdict.failures,
            checks=verdict.checks,
            remote=p.remote,
            rounds=r.rounds if r else 0,
            pages_copied=r.pages_copied if r else 0,
            checkpoints=CheckpointSummary(
                r.checkpoints if r else 0,
                (r.checkpoints - len(r.inexact)) if r else 0,
                len(r.inexact) if r else 0,
            ),
            pages_lost=len(lost),
            replication_mbps=r.replication_mbps if r else 0.0,
            stop_to_exit_seconds=self.stop_to_exit,
            guest_summary=self.guest_summary,
            guest_sum=obs.guest_sum,
            daemon=r,
            fault=obs.fault,
            wall_seconds=wall,
            cleanup=cleanup.summary(),
            params=p,
        )


def _summary(console: str) -> str | None:
    lines = [ln for ln in console.splitlines() if "tstaeshm: summary" in ln]
    return lines[-1].strip() if lines else None
