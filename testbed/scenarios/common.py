"""What the scenarios share: their hold on a lab (up, and at the end or on Ctrl-C the
cleanup), faults turned into one-line descriptions, and verdicts with known defects."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import docker

from testbed import topology
from testbed.checks.base import CheckResult, VerdictKind, first_failure, verdict_of
from testbed.cleanup import Removed
from testbed.errors import Interrupted, UserError
from testbed.known_defects import KnownDefect, load_defects, match
from testbed.lab.agent_client import AgentError, NodeLost
from testbed.lab.lab import Lab
from testbed.matrix.records import Cell
from testbed.privileges import Privileges
from testbed.protocol import ListVms, VmInfo, VmSpec

LOG = logging.getLogger(__name__)

StepCallback = Callable[[str], None]
NOTHING_CLEANED = "nothing to stop or remove"


@dataclass(frozen=True)
class CleanupReport:
    """What a run stopped and removed at its end; ``summary()`` says exactly that."""

    stopped: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    removed: Removed | None = None
    kept: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.stopped:
            parts.append("stopped " + ", ".join(self.stopped))
        if self.removed is not None:
            if self.removed.containers or self.removed.networks or self.removed.volumes:
                parts.append(f"{self.removed.summary()} of the lab this run created")
            else:
                parts.append("the lab this run created was gone already")
        if self.kept:
            parts.append("kept " + ", ".join(self.kept))
        if self.unreachable:
            parts.append(
                "could not reach "
                + ", ".join(self.unreachable)
                + " (their agents stop what this run started when the stream closes)"
            )
        return "; ".join(parts) if parts else NOTHING_CLEANED


@dataclass(frozen=True)
class KnownDefectRef:
    id: str
    title: str
    fix: str | None


@dataclass(frozen=True)
class Verdict:
    verdict: VerdictKind
    checks: list[CheckResult]
    failures: list[str]
    first_failure: str
    known_defect: KnownDefectRef | None


def decide(
    checks: Sequence[CheckResult],
    cell: Cell | None,
    qemu_version: str,
    accel: str,
    defects: Sequence[KnownDefect] | None = None,
) -> Verdict:
    """The verdict: PASS, known-defect when every failure matches one known defect, or
    FAIL."""
    failing = [c for c in checks if c.failed]
    defect = None
    if failing and cell is not None and qemu_version:
        defect = match(
            load_defects() if defects is None else defects,
            cell,
            qemu_version,
            sorted({c.check for c in failing}),
            [c.summary for c in failing],
            accel=accel,
        )
    ref = None
    if defect is not None:
        fix = defect.upstream_fix
        ref = KnownDefectRef(
            defect.id,
            defect.title,
            f"{fix.commit[:12]} ({fix.version or 'unreleased'})" if fix else None,
        )
    first = first_failure(checks)
    return Verdict(
        verdict_of(checks, known=defect is not None),
        list(checks),
        [c.line() for c in failing],
        first.line() if first else "",
        ref,
    )


def fault_text(lab: Lab, node: str, role: str, during: str, exc: BaseException) -> str:
    """A fault during a step, as one line naming the node and what happened to it."""
    dead = node_died(lab, node)
    if dead is not None:
        return f"{role} {node} died during {during}: {dead}"
    if isinstance(exc, NodeLost):
        return f"the agent of {role} {node} was lost during {during}: {exc.reason}"
    if isinstance(exc, AgentError) and exc.kind == "vm-gone":
        return f"{role} QEMU on {node} died during {during}: {exc.info.message}"
    message = exc.info.message if isinstance(exc, AgentError) else str(exc)
    return f"{during}: {role} {node}: {message}"


def node_died(lab: Lab, node: str) -> str | None:
    """Why a node is gone, or None when its container runs."""
    container = lab.docker.container(node)
    if container is None:
        return "container removed"
    container.reload()
    if container.status == "running":
        return None
    return lab.node_fault(node)


class ObservedFault(Exception):
    """Something in the procedure went wrong in a way the checks must report."""


FAULTS = (NodeLost, AgentError, TimeoutError, ObservedFault)


def vm_conflict(running: VmInfo, wanted: VmSpec) -> str | None:
    """Why a VM already on a board is in the way of starting ``wanted`` there, or None:
    the same name, tap, shared-memory file, disk, migration port or gdbstub port."""
    theirs = running.spec
    if running.name == wanted.name:
        return f"it is named {wanted.name!r} too"
    shared = [
        (wanted.tap, theirs.tap, "it uses tap {}"),
        (wanted.shm_path, theirs.shm_path, "it maps {}"),
        (wanted.disk, theirs.disk, "it runs on the disk {}"),
        (wanted.incoming, theirs.incoming, "it listens on {}"),
        (wanted.gdb_port, theirs.gdb_port, "its gdbstub has port {}"),
    ]
    for mine, its, why in shared:
        if mine and mine == its:
            return why.format(mine)
    return None


def refuse_conflicting_vm(lab: Lab, board: str, wanted: VmSpec, lab_name: str) -> None:
    """A clear refusal, before anything starts, when a guest on ``board`` is in the way."""
    for vm in lab.call(board, ListVms()).vms:
        why = vm_conflict(vm, wanted)
        if why is not None:
            raise UserError(
                f"{board} already runs a guest in this run's way ({vm.name}, started by hand "
                f"or by another run; {why})",
                f"stop it first: testbed guest stop {board} --lab {lab_name}"
                + ("" if vm.name == "guest" else f" --vm {vm.name}"),
            )


class LabParams(Protocol):
    """What a run's parameters say about its lab."""

    @property
    def lab(self) -> str: ...
    @property
    def topology_file(self) -> str | None: ...
    @property
    def suite(self) -> str: ...
    @property
    def keep(self) -> bool: ...


class LabRun:
    """A run's hold on a lab: ``up`` brings it up (a healthy lab is reused); ``finish``
    ends the run's agent sessions (each agent stops the VMs and helpers the run started
    and did not release) and takes the lab down if this run created it, unless kept.

    A run ``beside`` others (``testbed run all``) finds the lab up and leaves its nodes'
    network alone, which a run beside it may have changed (a migration's route switch);
    once the ``beside`` event is set, its agent calls raise :class:`Cancelled`, which
    the run handles as its own Ctrl-C."""

    def __init__(
        self,
        client: docker.DockerClient,
        lab: str,
        topology_file: str | None,
        suite: str,
        keep: bool,
        step: StepCallback,
        beside: threading.Event | None = None,
    ) -> None:
        topo = topology.load(topology_file) if topology_file else None
        self.lab = Lab(client, lab, topo, suite, cancel=beside)
        self.keep = keep
        self.step = step
        self.kept: list[str] = []

    @classmethod
    def of(
        cls,
        client: docker.DockerClient,
        params: LabParams,
        step: StepCallback,
        beside: threading.Event | None = None,
    ) -> LabRun:
        """The hold a run with these parameters needs."""
        return cls(
            client, params.lab, params.topology_file, params.suite, params.keep, step, beside
        )

    def up(self, bandwidth: str | None, privileges: Privileges) -> Lab:
        if self.lab.cancel is not None:  # a run beside others
            self.lab.require_up()
            return self.lab
        self.lab.up(
            bandwidth=bandwidth,
            on_step=lambda text: LOG.info("%s", text),
            board_privileges=privileges,
        )
        return self.lab

    def finish(self) -> CleanupReport:
        with second_ctrl_c_waits():
            return self._finish()

    def _finish(self) -> CleanupReport:
        stopped: list[str] = []
        unreachable: list[str] = []
        for node, ended in self.lab.close().items():
            if ended is None:
                unreachable.append(node)
                continue
            stopped += [f"QEMU {vm!r} on {node}" for vm in ended.stopped_vms]
            stopped += [f"{helper} on {node}" for helper in ended.stopped_helpers]
        removed = None
        if self.lab.created and not self.keep:
            removed = self.lab.down()
            unreachable = []  # their containers are gone, and everything in them
        elif self.lab.created:
            self.kept.insert(0, f"lab {self.lab.name}")
        return CleanupReport(stopped, unreachable, removed, self.kept)


@contextlib.contextmanager
def second_ctrl_c_waits() -> Iterator[None]:
    """Cleanup that a second Ctrl-C must not cut short (only the main thread gets SIGINT;
    elsewhere there is nothing to hold off)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def shared_lab(
    hold: LabRun, bandwidth: str | None, privileges: Privileges
) -> Iterator[list[CleanupReport]]:
    """A lab brought up once for several runs (``testbed run all``).  Each run finds it up
    and leaves it as it found it, its guests stopped; at the end, also on Ctrl-C or a
    fault, it is taken down if it was created here (unless kept).  The list yielded holds
    that last cleanup once the block has ended."""
    ended: list[CleanupReport] = []
    try:
        hold.up(bandwidth, privileges)
        yield ended
    except Interrupted as exc:  # the run in progress has cleaned up what it started
        raise Interrupted("; ".join([exc.summary, hold.finish().summary()])) from None
    except KeyboardInterrupt:
        raise Interrupted(hold.finish().summary()) from None
    except BaseException:
        hold.finish()
        raise
    ended.append(hold.finish())
