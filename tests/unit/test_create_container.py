"""A Ctrl-C while the engine creates a container: the creation is waited for and what it
made is removed (a stand-in engine answers, slowly; the Ctrl-C is Python's own)."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from testbed.docker_client import create_container


@dataclass
class StandInContainer:
    name: str
    removed: bool = False

    def remove(self, force: bool = False) -> None:
        self.removed = force


@dataclass
class SlowContainers:
    """Creates after ``delay`` seconds, whatever happens to the caller meanwhile; with
    ``hold``, only once that event is set too (the Ctrl-C has been delivered)."""

    delay: float
    made: list[StandInContainer] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    hold: threading.Event | None = None

    def create(self, image: str, name: str) -> StandInContainer:
        self.started.set()
        if self.hold is not None:
            assert self.hold.wait(10), "the Ctrl-C was never sent"
        time.sleep(self.delay)
        container = StandInContainer(name)
        self.made.append(container)
        return container


@dataclass
class StandInClient:
    containers: SlowContainers


@pytest.fixture()
def python_sigint() -> Iterator[None]:
    # a runner started as a background job ignores SIGINT, and interrupt_main then does
    # nothing: install Python's own handler for the test
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_container_made_after_a_ctrl_c_is_removed(python_sigint: None) -> None:
    """The Ctrl-C lands while the engine is creating (it answers only afterwards, however
    the threads are scheduled)."""
    sent = threading.Event()
    client = StandInClient(SlowContainers(delay=0.3, hold=sent))

    def ctrl_c_once_creating() -> None:
        assert client.containers.started.wait(10)
        _thread.interrupt_main()
        sent.set()

    threading.Thread(target=ctrl_c_once_creating, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        create_container(client, "board", name="testbed-boot-x")  # type: ignore[arg-type]
    # the engine's answer was waited for (the old code raised at once, and leaked it)
    (made,) = client.containers.made
    assert made.name == "testbed-boot-x" and made.removed


def test_without_a_ctrl_c_the_container_is_returned() -> None:
    client = StandInClient(SlowContainers(delay=0.05))
    made = create_container(client, "board", name="n")  # type: ignore[arg-type]
    assert made is client.containers.made[0] and not made.removed


def test_the_engines_refusal_reaches_the_caller() -> None:
    class Refusing(SlowContainers):
        def create(self, image: str, name: str) -> StandInContainer:
            raise RuntimeError("conflict: the name is in use")

    with pytest.raises(RuntimeError, match="name is in use"):
        create_container(StandInClient(Refusing(0)), "board", name="n")  # type: ignore[arg-type]
