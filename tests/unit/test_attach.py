"""The relay between the host and a node's agent (``python3 -m testbed.node.attach SOCKET``),
run for real against a unix socket standing in for a running agent."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

# the relay as the host runs it, reporting on exit which testbed modules it imported
WITH_MODULES = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write('modules: ' + ' '.join(sorted("
    "m for m in sys.modules if m.startswith('testbed')))))\n"
    "sys.argv = ['attach', sys.argv[1]]\n"
    "runpy.run_module('testbed.node.attach', run_name='__main__')\n"
)


class Agent:
    """A listening unix socket that answers each line with ``ok LINE`` and records what
    it saw, including the end of the stream."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.received = b""
        self.saw_end = threading.Event()
        self.close_after: bytes | None = None
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            try:
                while data := conn.recv(4096):
                    self.received += data
                    for line in data.splitlines():
                        conn.sendall(b"ok " + line + b"\n")
                    if self.close_after is not None and self.close_after in self.received:
                        return
            except OSError:  # the relay closed first (a reply it no longer wanted)
                return
            self.saw_end.set()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Agent, Path]]:
    path = tmp_path / "agent.sock"
    served = Agent(path)
    yield served, path
    served.server.close()


def relay(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WITH_MODULES, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_relays_both_ways_and_the_hosts_end_ends_the_session(agent: tuple[Agent, Path]) -> None:
    served, path = agent
    proc = relay(path)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"hello\nvm.start\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"ok hello\n"
    assert proc.stdout.readline() == b"ok vm.start\n"
    proc.stdin.close()  # the host goes away
    assert proc.wait(timeout=20) == 0
    assert served.received == b"hello\nvm.start\n"
    # the agent read the end of its session
    assert served.saw_end.wait(5)
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()


def test_the_agents_end_ends_the_relay(agent: tuple[Agent, Path]) -> None:
    served, path = agent
    served.close_after = b"bye\n"
    proc = relay(path)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"bye\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"ok bye\n"
    assert proc.wait(timeout=20) == 0  # with the host's side still open
    proc.stdin.close()
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()


def test_a_running_agent_costs_no_import_of_the_protocol(agent: tuple[Agent, Path]) -> None:
    """Every command starts one relay per node: it imports what relaying needs, and the
    agent-starting code (the protocol's dataclasses, asyncio) only when no agent runs."""
    _, path = agent
    proc = relay(path)
    _, err = proc.communicate(b"x\n", timeout=20)
    modules = err.decode().split("modules: ", 1)[1].split()
    assert modules == ["testbed", "testbed.node"]  # the packages around it, nothing else
