"""The guest's serial console, shared.

QEMU's socket chardev serves one client at a time.  The agent is that client: it reads
everything the guest prints (so the guest never stalls on a full buffer), types the
commands of ``testbed guest run`` and of the scenarios, and fans the console out to any
number of people attached with ``testbed console`` through a second unix socket (the
"mux"), whose input goes to the guest too.  QEMU's own ``logfile=`` keeps the whole
output, which is what offset-based reads use."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from testbed.protocol import CommandOutput
from testbed.wait import await_until

LOG = logging.getLogger(__name__)

# Lines that background programs and the kernel print between a command's own output.
BACKGROUND = re.compile(
    r"^(dirtyram: |tbload\[[^\]]*\]: |writeout: |tstaeshm: (writes|status)|\[ *\d+\.\d+\] )"
)


def command_output(text: str, token: str) -> str:
    """What a command typed on the console printed: ``text`` runs from where the command
    was typed to the shell's own ``TOKEN=$?=TOKEN`` line (excluded).  The console echoes
    the typed line, ``... echo TOKEN=$?=TOKEN``, in which the token is the last thing; a
    background program may print into the middle of that echo, so the output starts on
    the line after the echo's last token, not after the whole typed line.  Lines that
    background programs print meanwhile are left out."""
    end = text.rfind(token)
    if end >= 0:
        text = text[end + len(token) :]
    output = text.split("\n", 1)[1] if "\n" in text else ""
    lines = [
        line
        for line in output.replace("\r", "").strip("\n").splitlines()
        if not BACKGROUND.match(line)
    ]
    return "\n".join(lines)


class ConsoleTimeout(Exception):
    def __init__(self, what: str, timeout: float, tail: str) -> None:
        super().__init__(f"serial console: no {what} within {timeout:.0f} s; last output: {tail!r}")
        self.tail = tail


class ConsoleClosed(Exception):
    pass


class SerialPort:
    """The agent's connection to one guest's serial console."""

    _tokens = itertools.count(1)

    def __init__(self, path: str, mux_path: str | None = None) -> None:
        self.path = path
        self.mux_path = mux_path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._text = ""
        self._base = 0  # characters trimmed from the front of _text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._changed = asyncio.Condition()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._mux: asyncio.base_events.Server | None = None
        self._viewers: set[asyncio.StreamWriter] = set()
        self._run_lock = asyncio.Lock()

    async def connect(self, timeout: float, alive: Callable[[], bool]) -> None:
        tried = ["nothing yet"]

        async def connected() -> bool | None:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(self.path)
                return True
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                tried[0] = f"{type(exc).__name__}: {exc}"
                return None

        await await_until(
            connected,
            what=f"a connection to {self.path}",
            timeout=timeout,
            last=lambda: tried[0],
            gone=lambda: None if alive() else "QEMU exited",
            interval=0.01,
        )
        self._task = asyncio.create_task(self._read_loop(), name=f"serial {self.path}")
        if self.mux_path:
            with contextlib.suppress(FileNotFoundError):
                Path(self.mux_path).unlink()
            self._mux = await asyncio.start_unix_server(self._serve_viewer, self.mux_path)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        while True:
            try:
                data = await self._reader.read(65536)
            except OSError:
                data = b""
            async with self._changed:
                if not data:
                    self._closed = True
                    self._changed.notify_all()
                    return
                self._text += self._decoder.decode(data)
                if len(self._text) > 4 << 20:  # keep the newest 2 MiB in memory
                    cut = len(self._text) - (2 << 20)
                    self._text = self._text[cut:]
                    self._base += cut
                self._changed.notify_all()
            for viewer in list(self._viewers):
                try:
                    viewer.write(data)
                except (ConnectionError, RuntimeError):
                    self._viewers.discard(viewer)

    async def _serve_viewer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A person attached through the mux: their keys go to the guest."""
        self._viewers.add(writer)
        try:
            while data := await reader.read(4096):
                if self._writer is not None:
                    self._writer.write(data)
                    await self._writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._viewers.discard(writer)
            writer.close()

    @property
    def position(self) -> int:
        return self._base + len(self._text)

    def _since(self, start: int) -> str:
        return self._text[max(0, start - self._base) :]

    async def write(self, text: str) -> None:
        if self._writer is None or self._closed:
            raise ConsoleClosed("the serial console is closed (QEMU exited?)")
        self._writer.write(text.encode())
        await self._writer.drain()

    async def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` appears in the output after position ``start``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                text = self._since(start)
                match = regex.search(text)
                if match:
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    what = repr(pattern) + (" (console closed)" if self._closed else "")
                    raise ConsoleTimeout(what, timeout, text[-300:])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def run(self, command: str, timeout: float) -> CommandOutput:
        """Run a shell command in the guest: its output (without the lines background
        programs print meanwhile) and its exit status.  The command is followed by an
        echo of a unique token and ``$?``; the typed line echoes the token unexpanded,
        so only the shell's own output matches."""
        async with self._run_lock:
            token = f"TB{next(self._tokens)}x{int(time.monotonic() * 1000) % 100000}"
            typed = f"echo {token}=$?={token}"
            start = self.position
            joiner = " " if command.rstrip().endswith("&") else "; "  # `cmd &; x` is no sh
            await self.write(f"{command.rstrip()}{joiner}{typed}\n")
            match = await self.wait_for(rf"{token}=(\d+)={token}", timeout, start)
            output = command_output(self._since(start)[: match.start()], token)
            return CommandOutput(output, int(match.group(1)))

    async def close(self) -> None:
        if self._mux is not None:
            self._mux.close()
            for viewer in list(self._viewers):
                viewer.close()
            self._mux = None
            if self.mux_path:
                with contextlib.suppress(FileNotFoundError):
                    Path(self.mux_path).unlink()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
