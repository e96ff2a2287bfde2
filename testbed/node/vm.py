"""One QEMU guest's whole life: launch, serial console, QMP, shutdown.

Shaped after QEMU's own ``qemu.machine.QEMUMachine``: ``launch()`` / ``shutdown()``, a
context manager, and a launch failure that carries the command line, the exit status and
QEMU's output."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from testbed.node.cmdline import GuestConfig, build_command
from testbed.node.console import SerialConsole

LOG = logging.getLogger(__name__)


class VMLaunchFailure(Exception):
    def __init__(self, reason: str, command: list[str], exitcode: int | None, output: str) -> None:
        self.reason = reason
        self.command = command
        self.exitcode = exitcode
        self.output = output
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        super().__init__(f"QEMU failed to launch ({reason}; exit status {exitcode}): {last}")

    def details(self) -> str:
        return (
            f"{self}\ncommand: {shlex.join(self.command)}\n"
            f"exit status: {self.exitcode}\noutput:\n{self.output}"
        )


class VirtualMachine:
    """A QEMU process built from a :class:`GuestConfig`, with its console and QMP."""

    def __init__(self, config: GuestConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.command = build_command(config)
        self.log_path = workdir / "qemu.log"
        self.console = SerialConsole(config.serial_socket)
        self.qmp: QEMUMonitorProtocol | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.launched_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------
    def launch(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for path in (self.config.serial_socket, self.config.qmp_socket, self.config.monitor_socket):
            if path and os.path.exists(path):
                os.unlink(path)
        LOG.debug("launching: %s", shlex.join(self.command))
        self._log_file = open(self.log_path, "wb")
        self.launched_at = time.monotonic()
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.console.connect(timeout, alive=self.is_running)
            self.qmp = self._connect_qmp(timeout)
        except Exception as exc:
            self._kill()
            raise VMLaunchFailure(
                f"{type(exc).__name__}: {exc}", self.command, self.exitcode, self.output()
            ) from exc

    def _connect_qmp(self, timeout: float) -> QEMUMonitorProtocol:
        deadline = time.monotonic() + timeout
        while True:
            qmp = QEMUMonitorProtocol(self.config.qmp_socket)
            try:
                qmp.connect()
                return qmp
            except Exception:
                qmp.close()
                if time.monotonic() > deadline or not self.is_running():
                    raise
                time.sleep(0.02)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exitcode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def command_qmp(self, name: str, **args: Any) -> Any:
        if self.qmp is None:
            raise RuntimeError("QMP is not connected")
        return self.qmp.cmd(name, **args)

    def qemu_version(self) -> tuple[str, str]:
        """(``major.minor.micro``, the distribution's package string) from QMP."""
        info = self.command_qmp("query-version")
        q = info["qemu"]
        return f"{q['major']}.{q['minor']}.{q['micro']}", str(info.get("package", "")).strip()

    def shutdown(self, timeout: float = 10.0) -> int | None:
        """Quit through QMP, falling back to SIGTERM and SIGKILL; always cleans up."""
        try:
            if self.is_running() and self.qmp is not None:
                try:
                    self.qmp.cmd("quit")
                except Exception as exc:  # QEMU may close the socket before answering
                    LOG.debug("quit: %s", exc)
            if self._proc is not None:
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    LOG.warning("QEMU did not quit in %.0f s, killing it", timeout)
                    self._kill()
        finally:
            self._post_shutdown()
        return self.exitcode

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _post_shutdown(self) -> None:
        if self.qmp is not None:
            try:
                self.qmp.close()
            except Exception:
                pass
            self.qmp = None
        self.console.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        for path in (self.config.serial_socket, self.config.qmp_socket, self.config.monitor_socket):
            if path and os.path.exists(path):
                os.unlink(path)

    def __enter__(self) -> VirtualMachine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
