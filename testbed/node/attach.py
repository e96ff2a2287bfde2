"""``python3 -m testbed.node attach``: the host's way to the node agent.

Run through ``docker exec -i`` (so it works wherever the Docker API does, Docker Desktop
included); starts the agent if it does not run yet (under a lock, so two hosts racing
start one agent), then relays stdin to the agent's socket and the socket to stdout until
either side closes.  When the host goes away (Ctrl-C, a crash, SIGKILL), the exec stream
closes, this relay ends, and the agent ends the session: what it started stops.

The host runs it as ``python3 -m testbed.node.attach SOCKET``: every command that talks to
a node starts one, so this module imports only what relaying needs (30 ms of CPU, where
the ``testbed.node`` entry point with the protocol's dataclasses took 220 ms); starting
the agent imports the rest."""

from __future__ import annotations

import os
import socket
import sys
import threading

AGENT_LOG = "/run/testbed/agent.log"
LOCK = "/run/testbed/agent.lock"
START_TIMEOUT = 20.0


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        return sock
    except OSError:
        sock.close()
        return None


def ensure_agent(path: str) -> socket.socket:
    sock = _connect(path)
    if sock is not None:
        return sock
    return _start_agent(path)


def _start_agent(path: str) -> socket.socket:
    import fcntl
    import subprocess
    from pathlib import Path

    from testbed.wait import WaitTimeout, wait_until

    Path(LOCK).parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(path)  # another relay may have started it meanwhile
        if sock is not None:
            return sock
        with open(AGENT_LOG, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "testbed.node", "agent", "--socket", path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        try:
            return wait_until(
                lambda: _connect(path),
                what="testbed agent listening",
                timeout=START_TIMEOUT,
                last=_agent_log_tail,
                interval=0.02,
            )
        except WaitTimeout as exc:
            raise SystemExit(str(exc)) from None


def _agent_log_tail() -> str:
    from pathlib import Path

    try:
        lines = Path(AGENT_LOG).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no agent log"
    return lines[-1] if lines else "no output"


def relay(sock: socket.socket) -> None:
    def upstream() -> None:
        try:
            while data := os.read(0, 1 << 16):
                sock.sendall(data)
        except OSError:
            pass
        # the host is gone: close, so that the agent ends the session
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while data := sock.recv(1 << 16):
            os.write(1, data)
    except OSError:
        pass


def main(path: str) -> int:
    relay(ensure_agent(path))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m testbed.node.attach SOCKET")
    sys.exit(main(sys.argv[1]))
