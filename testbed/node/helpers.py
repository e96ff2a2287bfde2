"""Helper processes the agent runs for a session: the replication daemon, its receiver.

A helper's output goes to ``/run/testbed/helpers/NAME.log``; it is ready when that log
shows a given text or when it listens on a given TCP port; it belongs to the session that
started it and stops with it (SIGTERM, then SIGKILL) unless released."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from testbed.errors import UserError
from testbed.protocol import HelperExit
from testbed.wait import WaitAborted, WaitTimeout, await_until

LOG = logging.getLogger(__name__)

HELPER_ROOT = Path("/run/testbed/helpers")


def listening(port: int) -> bool:
    """A TCP socket in LISTEN state on ``port`` (any address), from /proc/net/tcp{,6}."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
                return True
    return False


class Helper:
    def __init__(self, name: str, argv: list[str], root: Path = HELPER_ROOT) -> None:
        self.name = name
        self.argv = argv
        self.log = root / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    async def start(self, ready_text: str | None, ready_port: int | None, timeout: float) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        LOG.info("helper %s: pid %d: %s", self.name, self.proc.pid, " ".join(self.argv))
        if ready_text is None and ready_port is None:
            return

        async def ready() -> bool | None:
            if ready_text is not None and ready_text in self.log.read_text(errors="replace"):
                return True
            if ready_port is not None and listening(ready_port):
                return True
            return None

        def gone() -> str | None:
            return None if self.running else "it exited"

        what = f"helper {self.name} ready"
        try:
            await await_until(
                ready,
                what=what,
                timeout=timeout,
                last=lambda: self.log_tail() or "no output",
                gone=gone,
            )
        except WaitAborted:
            await self.wait(1.0)
            raise UserError(
                f"helper {self.name} exited ({self.exit_code}) before it was ready: "
                f"{self.log_tail() or 'no output'}"
            ) from None
        except WaitTimeout:
            await self.stop()
            raise UserError(
                f"helper {self.name} was not ready within {timeout:.0f} s: "
                f"{self.log_tail() or 'no output'}"
            ) from None

    async def wait(self, timeout: float) -> HelperExit:
        if self.proc is not None and self.proc.returncode is None and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout)
        if self.proc is not None and self.proc.returncode is not None:
            self.exit_code = self.proc.returncode
        return HelperExit(self.name, self.running, self.exit_code, self.log_tail())

    async def signal(self, sig: signal.Signals, timeout: float) -> HelperExit:
        if self.running and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        return await self.wait(timeout)

    async def stop(self) -> HelperExit:
        result = await self.signal(signal.SIGTERM, 5.0)
        if result.running:
            result = await self.signal(signal.SIGKILL, 5.0)
        return result
