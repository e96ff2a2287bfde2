"""The shared-memory scenario's waits for its daemon: a timeout names what the daemon last
logged, and a receiver that dies ends the wait at once (pure logic: a stand-in lab answers
the agent's calls)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from testbed.protocol import HelperExit, HelperWait
from testbed.scenarios.common import ObservedFault
from testbed.scenarios.shmem import ShmemScenario

TAIL = "replicate: checkpoint 7 sent to 10.210.10.101:5555, waiting for its ack"


@dataclass
class StandInContainer:
    status: str = "running"

    def reload(self) -> None:
        pass


@dataclass
class StandInLab:
    """The daemon never ends; the receiver's container runs until ``receiver_dies_after``
    calls."""

    receiver_dies_after: int | None = None
    calls: list[HelperWait] = field(default_factory=list)

    @property
    def docker(self) -> StandInLab:
        return self

    def container(self, node: str) -> StandInContainer:
        dead = self.receiver_dies_after is not None and len(self.calls) >= self.receiver_dies_after
        return StandInContainer("exited" if dead and node == "gauss-b" else "running")

    def node_fault(self, node: str) -> str:
        return "container exited (137)"

    def call(self, node: str, request: HelperWait) -> HelperExit:
        self.calls.append(request)
        return HelperExit("replicate", running=True, exit_code=None, log_tail=TAIL)


def scenario(lab: StandInLab) -> ShmemScenario:
    s = object.__new__(ShmemScenario)
    s.lab = lab  # type: ignore[assignment]
    s.board, s.peer = "gauss-a", "gauss-b"
    s.DAEMON_END_TIMEOUT = 0.3  # type: ignore[misc]
    return s


def test_remote_daemon_timeout_names_its_last_log_line() -> None:
    with pytest.raises(TimeoutError) as caught:
        scenario(StandInLab()).wait_daemon(remote="10.210.10.101:5555")
    assert "the daemon's exit" in str(caught.value) and TAIL in str(caught.value)


def test_local_daemon_timeout_names_its_last_log_line() -> None:
    with pytest.raises(TimeoutError) as caught:
        scenario(StandInLab()).wait_daemon(remote=None)
    assert TAIL in str(caught.value)


def test_a_dead_receiver_ends_the_wait_at_once() -> None:
    lab = StandInLab(receiver_dies_after=2)
    s = scenario(lab)
    s.DAEMON_END_TIMEOUT = 30  # type: ignore[misc]
    started = time.monotonic()
    with pytest.raises(ObservedFault, match="receiver gauss-b: container exited"):
        s.wait_daemon(remote="10.210.10.101:5555")
    assert time.monotonic() - started < 5 and len(lab.calls) == 2
