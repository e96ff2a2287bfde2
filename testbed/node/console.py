"""The guest's serial console: a unix socket served by QEMU's socket chardev."""

from __future__ import annotations

import codecs
import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

LOG = logging.getLogger(__name__)


class ConsoleTimeout(Exception):
    """The console did not show what was expected in time."""

    def __init__(self, what: str, timeout: float, tail: str) -> None:
        super().__init__(f"serial console: no {what} within {timeout:.0f} s; last output: {tail!r}")
        self.tail = tail


@dataclass(frozen=True)
class CommandOutput:
    output: str
    status: int


class SerialConsole:
    """Reads everything the guest prints (a thread drains the socket, so the guest never
    stalls on a full buffer) and types commands into the guest's shell."""

    _ids = itertools.count(1)

    def __init__(self, path: str, prompt: str | None = None) -> None:
        self.path = path
        self.prompt = prompt  # regex of the shell prompt; run() waits for it before typing
        self._cursor = 0  # output before this offset belongs to earlier commands
        self._sock: socket.socket | None = None
        self._text = ""  # everything received, decoded
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._cond = threading.Condition()
        self._closed = False
        self._reader: threading.Thread | None = None

    def connect(self, timeout: float, alive: Callable[[], bool] | None = None) -> None:
        """Connect, retrying until QEMU has created the socket (or ``alive()`` says no)."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline or (alive is not None and not alive()):
                    raise
                time.sleep(0.01)
        self._sock = sock
        self._reader = threading.Thread(target=self._read_loop, name="serial-reader", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._closed = True
                    self._cond.notify_all()
                    return
                self._text += self._decoder.decode(data)
                self._cond.notify_all()

    @property
    def position(self) -> int:
        with self._cond:
            return len(self._text)

    def text(self, start: int = 0) -> str:
        with self._cond:
            return self._text[start:]

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the output after offset ``start``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = self._text[start:]
                match = regex.search(text)
                if match:
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    what = f"{pattern!r}" + (" (console closed)" if self._closed else "")
                    raise ConsoleTimeout(what, timeout, text[-300:])
                self._cond.wait(min(left, 0.5))

    def write(self, data: str) -> None:
        if self._sock is None:
            raise RuntimeError("serial console not connected")
        self._sock.sendall(data.encode())

    def run(self, command: str, timeout: float = 30.0) -> CommandOutput:
        """Run a shell command in the guest and return its output and exit status.

        The command is followed by an echo of a unique token and ``$?``; the typed line
        echoes the token unexpanded, so only the shell's own output matches."""
        if self.prompt:
            prompt = self.wait_for(self.prompt, timeout, self._cursor)
            self._cursor += prompt.end()
        token = f"TB{next(self._ids)}x{int(time.monotonic() * 1000) % 100000}"
        start = self._cursor
        typed = f"echo {token}=$?={token}"
        self.write(f"{command}; {typed}\n")
        match = self.wait_for(rf"{token}=(\d+)={token}", timeout, start)
        self._cursor = start + match.end()
        text = self.text(start)[: match.start()]
        # the output starts after the (last) echo of the typed line
        echo_at = text.rfind(typed)
        text = text[echo_at + len(typed) :] if echo_at >= 0 else text
        output = text.split("\n", 1)[1] if "\n" in text else ""
        return CommandOutput(output.replace("\r", "").strip("\n"), int(match.group(1)))

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._reader is not None:
            self._reader.join(timeout=2)
