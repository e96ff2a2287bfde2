"""What the scenarios share: their hold on a lab (up, and at the end or on Ctrl-C the
cleanup), faults turned into one-line descriptions, and verdicts with known defects."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import docker

from testbed import topology
from testbed.checks.base import CheckResult, VerdictKind, first_failure, verdict_of
from testbed.cleanup import Removed
from testbed.errors import Interrupted
from testbed.known_defects import KnownDefect, load_defects, match
from testbed.lab.agent_client import AgentError, NodeLost
from testbed.lab.lab import Lab
from testbed.matrix.records import Cell
from testbed.privileges import Privileges

LOG = logging.getLogger(__name__)

StepCallback = Callable[[str], None]


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
        return "; ".join(parts) if parts else "nothing to stop or remove"


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


class LabRun:
    """A run's hold on a lab: ``up`` brings it up (a healthy lab is reused); ``finish``
    ends the run's agent sessions (each agent stops the VMs and helpers the run started
    and did not release) and takes the lab down if this run created it, unless kept."""

    def __init__(
        self,
        client: docker.DockerClient,
        lab: str,
        topology_file: str | None,
        suite: str,
        keep: bool,
        step: StepCallback,
    ) -> None:
        topo = topology.load(topology_file) if topology_file else None
        self.lab = Lab(client, lab, topo, suite)
        self.keep = keep
        self.step = step
        self.kept: list[str] = []

    def up(self, bandwidth: str | None, privileges: Privileges) -> Lab:
        self.lab.up(
            bandwidth=bandwidth,
            on_step=lambda text: LOG.info("%s", text),
            board_privileges=privileges,
        )
        return self.lab

    def finish(self) -> CleanupReport:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits
        try:
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
