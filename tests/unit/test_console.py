"""SerialConsole's command protocol against a real shell behind a unix socket that
behaves like a serial line (echoes what is typed, prints a prompt)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.node.console import ConsoleTimeout, SerialConsole


def serve_shell(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(b"TESTBED-READY arch=test\r\nguest# ")
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                conn.sendall(line + b"\r\n")  # tty echo
                out = subprocess.run(["sh", "-c", line.decode()], capture_output=True).stdout
                conn.sendall(out.replace(b"\n", b"\r\n") + b"guest# ")


@pytest.fixture()
def console(tmp_path: Path) -> Iterator[SerialConsole]:
    path = str(tmp_path / "serial.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    threading.Thread(target=serve_shell, args=(listener,), daemon=True).start()
    con = SerialConsole(path, prompt=r"guest# ")
    con.connect(timeout=5)
    yield con
    con.close()
    listener.close()


def test_run_returns_output_and_status(console: SerialConsole) -> None:
    console.wait_for("TESTBED-READY", 5)
    result = console.run("echo hello; echo world", timeout=5)
    assert result.output == "hello\nworld" and result.status == 0


def test_nonzero_status_and_consecutive_commands(console: SerialConsole) -> None:
    assert console.run("false", timeout=5).status == 1
    assert console.run("(exit 3)", timeout=5).status == 3
    assert console.run("printf 'a b'", timeout=5).output == "a b"


def test_timeout_names_what_was_awaited_and_the_last_output(console: SerialConsole) -> None:
    with pytest.raises(ConsoleTimeout, match="NEVER-PRINTED.*TESTBED-READY"):
        console.wait_for("NEVER-PRINTED", 0.3)
