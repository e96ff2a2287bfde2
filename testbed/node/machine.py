"""One QEMU guest's whole life, shaped after QEMU's own ``qemu.machine.QEMUMachine``.

``launch()`` is ``_pre_launch()`` (directories, stale sockets, the command line),
``_launch()`` (the process, detached in its own session, output to ``qemu.log``) and
``_post_launch()`` (QMP, the event recorder, the serial console).  ``shutdown()`` tries
QMP ``quit``, then SIGTERM, then SIGKILL, and ``_post_shutdown()`` always runs.  A failed
launch raises :class:`VMLaunchFailure` with the command line, the exit status and QEMU's
output.  It is an async context manager.

Every path that starts QEMU uses it: the lab's guests (through the node agent), the
one-shot boot, and the stream recorder.  A machine can also be *adopted*: a new agent
re-attaches to a QEMU that an earlier agent started (its state file says which)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import cast

from qemu.qmp import ExecInterruptedError, QMPClient
from qemu.qmp.events import EventListener
from qemu.qmp.protocol import Runstate, StateError

from testbed import codec
from testbed.codec import Json
from testbed.node.cmdline import GuestConfig, build_command
from testbed.node.serial import SerialPort
from testbed.protocol import QmpEvent, VmSpec
from testbed.wait import WaitAborted, await_until

LOG = logging.getLogger(__name__)


class VMLaunchFailure(Exception):
    """QEMU did not come up: carries what a person needs to see why."""

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


class VmGone(Exception):
    """The VM is not running (any more)."""


@dataclass(frozen=True)
class MachinePaths:
    """Where a machine keeps its sockets and logs: ``ROOT/NAME/``."""

    dir: Path

    @classmethod
    def under(cls, root: str | Path, name: str) -> MachinePaths:
        return cls(Path(root) / name)

    @property
    def serial_socket(self) -> Path:
        return self.dir / "serial.sock"

    @property
    def console_socket(self) -> Path:
        """The agent's fan-out of the serial console (``testbed console`` attaches here)."""
        return self.dir / "console.sock"

    @property
    def monitor_socket(self) -> Path:
        """The agent's fan-out of the HMP monitor (``testbed monitor`` attaches here): a
        person who leaves without closing the connection cannot lock the others out."""
        return self.dir / "monitor.sock"

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def qmp_socket(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def service_qmp_socket(self) -> Path:
        """A second QMP monitor for a long-lived client of its own (the replication daemon)."""
        return self.dir / "qmp-service.sock"

    @property
    def hmp_socket(self) -> Path:
        return self.dir / "hmp.sock"

    @property
    def qemu_log(self) -> Path:
        return self.dir / "qemu.log"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def sockets(self) -> tuple[Path, ...]:
        return (
            self.serial_socket,
            self.console_socket,
            self.monitor_socket,
            self.qmp_socket,
            self.service_qmp_socket,
            self.hmp_socket,
        )


class EventRecorder:
    """Every QMP event of one machine, numbered, with QEMU's timestamps; waiters wake on
    each new event."""

    def __init__(self) -> None:
        self.events: list[QmpEvent] = []
        self._changed = asyncio.Condition()

    @property
    def seq(self) -> int:
        return len(self.events)

    async def add(self, name: str, at: float, data: dict[str, Json]) -> None:
        async with self._changed:
            self.events.append(QmpEvent(len(self.events) + 1, name, at, data))
            self._changed.notify_all()

    def after(self, seq: int, names: set[str] | None = None) -> list[QmpEvent]:
        return [e for e in self.events[seq:] if not names or e.event in names]

    async def wait(
        self, seq: int, names: set[str], timeout: float, alive: asyncio.Event | None = None
    ) -> QmpEvent | None:
        """The first event named in ``names`` after ``seq``, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                found = self.after(seq, names)
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)

    async def poke(self) -> None:
        async with self._changed:
            self._changed.notify_all()


class Machine:
    """A QEMU process built from a :class:`VmSpec`, with QMP, its events and the console."""

    def __init__(
        self, spec: VmSpec, config: GuestConfig, paths: MachinePaths, console_mux: bool = True
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.config = config
        self.paths = paths
        self.command = build_command(config)
        self.qmp = QMPClient(f"{spec.name}")
        self.events = EventRecorder()
        self.console = SerialPort(
            str(paths.serial_socket), str(paths.console_socket) if console_mux else None
        )
        # the HMP monitor, shared the same way (QEMU's socket serves one client at a time)
        self.monitor = (
            SerialPort(str(paths.hmp_socket), str(paths.monitor_socket)) if (console_mux) else None
        )
        self.started_at = 0.0
        self.qemu_version = ""
        self.qemu_package = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._pid: int | None = None
        self._exit_code: int | None = None
        self._exited = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: EventListener | None = None

    # -- state ---------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def alive(self) -> bool:
        return self._pid is not None and not self._exited.is_set()

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    def output(self) -> str:
        try:
            return self.paths.qemu_log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 1) -> str:
        text = self.output().strip().splitlines()
        return " | ".join(text[-lines:]) if text else "no output"

    def require_alive(self) -> None:
        if not self.alive:
            raise VmGone(
                f"VM {self.name!r} is not running (QEMU exited with status "
                f"{self._exit_code}: {self.log_tail()})"
            )

    # -- launch --------------------------------------------------------------------------
    async def launch(self, timeout: float = 30.0) -> None:
        self._pre_launch()
        await self._launch()
        try:
            await self._post_launch(timeout)
        except asyncio.CancelledError:
            # the session that asked for this VM is gone: QEMU must not outlive the launch
            await self._hard_stop()
            await self._post_shutdown(keep_logs=True)
            raise
        except Exception as exc:
            await self._hard_stop()
            await self._post_shutdown(keep_logs=True)
            raise VMLaunchFailure(
                f"{type(exc).__name__}: {exc}", self.command, self._exit_code, self.output()
            ) from exc

    def _pre_launch(self) -> None:
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        for path in self.paths.dir.iterdir():
            if path.is_file() or path.is_socket() or path.is_fifo():
                path.unlink()
        LOG.info("%s: %s", self.name, shlex.join(self.command))

    async def _launch(self) -> None:
        with open(self.paths.qemu_log, "wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C aimed at the agent does not reach QEMU
            )
        self._pid = self._proc.pid
        self.started_at = time.time()
        self._tasks.append(asyncio.create_task(self._watch_child(), name=f"{self.name} exit"))
        self._write_state()

    async def _watch_child(self) -> None:
        assert self._proc is not None
        self._exit_code = await self._proc.wait()
        self._exited.set()
        LOG.info("%s: QEMU exited with status %s", self.name, self._exit_code)
        await self.events.poke()

    async def _post_launch(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        tried = ["nothing yet"]

        async def connected() -> bool | None:
            try:
                await self.qmp.connect(str(self.paths.qmp_socket))
                return True
            except Exception as exc:  # not listening yet
                tried[0] = f"{type(exc).__name__}: {exc}"
                return None

        try:
            await await_until(
                connected,
                what=f"QMP of {self.name}",
                timeout=timeout,
                last=lambda: tried[0],
                gone=lambda: None if self.alive else "QEMU exited during start-up",
                interval=0.02,
            )
        except WaitAborted as exc:
            raise VmGone(str(exc)) from None
        self._listener = EventListener()
        self.qmp.register_listener(self._listener)
        self._tasks.append(asyncio.create_task(self._record_events(), name=f"{self.name} events"))
        version = await self.execute("query-version")
        assert isinstance(version, dict)
        qemu = version["qemu"]
        assert isinstance(qemu, dict)
        self.qemu_version = f"{qemu['major']}.{qemu['minor']}.{qemu['micro']}"
        self.qemu_package = str(version.get("package", "")).strip()
        await self.console.connect(max(1.0, deadline - time.monotonic()), lambda: self.alive)
        if self.monitor is not None:
            await self.monitor.connect(max(1.0, deadline - time.monotonic()), lambda: self.alive)
        self._write_state()

    async def _record_events(self) -> None:
        assert self._listener is not None
        async for message in self._listener:
            # QMP events carry {"seconds": N, "microseconds": N} (qemu.qmp types it object)
            stamp = cast("dict[str, int]", message.get("timestamp", {}))
            at = float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6
            data = message.get("data", {})
            await self.events.add(str(message["event"]), at, data if isinstance(data, dict) else {})

    def _write_state(self) -> None:
        state = {
            "pid": self._pid,
            "started_at": self.started_at,
            "command": self.command,
            "qemu_version": self.qemu_version,
            "qemu_package": self.qemu_package,
            "accel": self.config.accel,
            "spec": codec.to_json(self.spec),
        }
        self.paths.state_file.write_text(json.dumps(state))

    # -- adopting a machine an earlier agent started ------------------------------------------
    @classmethod
    async def adopt(cls, paths: MachinePaths) -> Machine | None:
        """Re-attach to the QEMU described by ``paths.state_file`` if it still runs."""
        from testbed.node.vmconfig import guest_config

        try:
            state = json.loads(paths.state_file.read_text())
            spec = codec.from_json(VmSpec, state["spec"])
            pid = int(state["pid"])
        except (OSError, ValueError, KeyError, codec.DecodeError):
            return None
        if not _process_runs(pid, state.get("command", [""])[0]):
            return None
        machine = cls(spec, guest_config(spec, paths, state.get("accel")), paths)
        machine.command = list(state["command"])
        machine._pid = pid
        machine.started_at = float(state["started_at"])
        machine.qemu_version = str(state.get("qemu_version", ""))
        machine.qemu_package = str(state.get("qemu_package", ""))
        machine._tasks.append(asyncio.create_task(machine._watch_pid(), name=f"{spec.name} pid"))
        try:
            await machine._post_launch(timeout=5.0)
        except Exception as exc:
            LOG.warning("%s: cannot re-attach to QEMU %d: %s", spec.name, pid, exc)
            return None
        LOG.info("%s: re-attached to QEMU %d", spec.name, pid)
        return machine

    async def _watch_pid(self) -> None:
        assert self._pid is not None
        while _process_runs(self._pid, None):
            await asyncio.sleep(0.2)
        self._exited.set()
        await self.events.poke()

    # -- QMP -----------------------------------------------------------------------------
    async def execute(self, command: str, arguments: dict[str, Json] | None = None) -> Json:
        self.require_alive()
        if self.qmp.runstate != Runstate.RUNNING:  # QEMU closed its monitor: it is quitting
            await self._wait_exit(3.0)
            raise VmGone(
                f"VM {self.name!r} is shutting down (QMP closed; QEMU "
                f"{'exited ' + str(self._exit_code) if not self.alive else 'still exiting'})"
            )
        try:
            result = await self.qmp.execute(command, arguments)
        except (StateError, ExecInterruptedError, EOFError, ConnectionError) as exc:
            await self._wait_exit(3.0)
            raise VmGone(
                f"VM {self.name!r}: QMP connection lost ({exc}); "
                f"QEMU {'exited ' + str(self._exit_code) if not self.alive else 'runs'}"
            ) from None
        return result  # type: ignore[return-value]

    async def hmp(self, command_line: str) -> str:
        return str(await self.execute("human-monitor-command", {"command-line": command_line}))

    async def status(self) -> str:
        if not self.alive:
            return "exited"
        try:
            answer = await self.execute("query-status")
        except VmGone:
            return "exited" if not self.alive else "shutting down"
        assert isinstance(answer, dict)
        return str(answer["status"])

    # -- shutdown ------------------------------------------------------------------------
    async def shutdown(self, timeout: float = 10.0) -> str:
        """Quit through QMP, then SIGTERM, then SIGKILL; always cleans up.  Returns how."""
        how = "already exited"
        try:
            if self.alive:
                how = "quit"
                with contextlib.suppress(Exception):  # QEMU may close QMP before answering
                    await asyncio.wait_for(self.qmp.execute("quit"), 3)
                if not await self._wait_exit(timeout):
                    how = await self._hard_stop()
        finally:
            await self._post_shutdown()
        return how

    async def _wait_exit(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), timeout)
        return self._exited.is_set()

    async def _hard_stop(self) -> str:
        how = "already exited"
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.alive or self._pid is None:
                break
            how = sig.name
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)
            if await self._wait_exit(3.0):
                break
        return how

    async def _post_shutdown(self, keep_logs: bool = True) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.qmp.disconnect(), 3)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self.qmp.remove_listener(self._listener)
            self._listener = None
        await self.console.close()
        if self.monitor is not None:
            await self.monitor.close()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for path in self.paths.sockets:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.paths.state_file.unlink()
        if not keep_logs:
            for path in (self.paths.qemu_log, self.paths.serial_log):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    async def __aenter__(self) -> Machine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


def _process_runs(pid: int, program: str | None) -> bool:
    """True while ``pid`` runs (not a zombie) and, if given, runs ``program``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        if program:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            return Path(argv0).name == Path(program).name
        return True
    except (OSError, IndexError):
        return False
