"""A long-lived guest in a lab board, driven by short agent commands.

``vm start`` launches QEMU detached from the agent (the container's init reaps it) with
its serial console, QMP and HMP on unix sockets under ``/run/testbed/vm/NAME``; every
later command (``vm ready``, ``vm run``, ``vm qmp``, ``vm ram-hashes``, ``vm poke``,
``vm stop``) connects, acts and disconnects, so a person can attach to the console
(``testbed console``) or the monitor (``testbed monitor``) between the steps."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from testbed.arch import get_arch
from testbed.node.accel import choose_accel, probe_host
from testbed.node.cmdline import Disk, GuestConfig, Nic, SharedMemory, build_command
from testbed.node.console import SerialConsole
from testbed.node.gdbstub import GdbRemote
from testbed.node.guest import READY_PATTERN, GuestArtifacts

LOG = logging.getLogger(__name__)

VM_ROOT = Path("/run/testbed/vm")
RAM_BASE = 0x40000000  # guest RAM starts here on QEMU's virt machine (arm and aarch64)
PAGE = 4096
HASH_BYTES = 8
# lines that the guest's background programs and kernel print on the console between a
# command's own output lines
BACKGROUND = re.compile(r"^(dirtyram: bursts=|writeout: |tstaeshm: writes=|\[ *\d+\.\d+\] )")


class VMError(Exception):
    pass


@dataclass
class LabVMSpec:
    arch: str
    name: str = "guest"
    accel: str = "auto"
    mem_mb: int = 512
    smp: int = 1
    disk: str | None = None  # nfs://... or a path
    tap: str | None = None
    mac: str | None = None
    guest_ip: str | None = None
    guest_gateway: str | None = None
    incoming: str | None = None
    paused: bool = False
    gdb_port: int | None = None
    shm_path: str | None = None
    shm_size: str = "1M"
    shm_first: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabVMSpec:
        return cls(**data)


class LabVM:
    def __init__(self, name: str = "guest") -> None:
        self.dir = VM_ROOT / name
        self.serial_socket = self.dir / "serial.sock"
        self.serial_log = self.dir / "serial.log"
        self.qmp_socket = self.dir / "qmp.sock"
        self.service_qmp_socket = self.dir / "qmp-replicate.sock"
        self.hmp_socket = self.dir / "hmp.sock"
        self.qemu_log = self.dir / "qemu.log"
        self.state_file = self.dir / "state.json"
        self.dump_file = self.dir / "ram.bin"

    # -- state -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            raise VMError(f"no VM {self.dir.name!r} in this node") from None

    def pid(self) -> int:
        return int(self.state()["pid"])

    def alive(self) -> bool:
        try:
            pid = self.pid()
        except VMError:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a zombie is not alive; the container's init reaps it soon
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, spec: LabVMSpec, timeout: float = 30.0) -> dict[str, Any]:
        if self.alive():
            raise VMError(f"VM {spec.name!r} is already running (pid {self.pid()}); stop it first")
        arch = get_arch(spec.arch)
        accel = choose_accel(spec.accel, arch, probe_host())
        artifacts = GuestArtifacts.for_arch(arch)
        self.dir.mkdir(parents=True, exist_ok=True)
        for path in self.dir.iterdir():
            path.unlink()
        config = GuestConfig(
            arch=arch,
            accel=accel,
            kernel=str(artifacts.kernel),
            initrd=str(artifacts.initrd),
            serial_socket=str(self.serial_socket),
            serial_log=str(self.serial_log),
            qmp_socket=str(self.qmp_socket),
            monitor_socket=str(self.hmp_socket),
            service_qmp_socket=str(self.service_qmp_socket) if spec.shm_path else None,
            mem_mb=spec.mem_mb,
            smp=spec.smp,
            nic=Nic(spec.tap, spec.mac) if spec.tap and spec.mac else None,
            guest_ip=spec.guest_ip,
            guest_gateway=spec.guest_gateway,
            disk=Disk(spec.disk) if spec.disk else None,
            incoming=spec.incoming,
            start_paused=spec.paused,
            serial_wait=False,
            gdb_port=spec.gdb_port,
            shm=SharedMemory(spec.shm_path, spec.shm_size, spec.shm_first)
            if spec.shm_path
            else None,
        )
        command = build_command(config)
        LOG.info("starting: %s", shlex.join(command))
        with open(self.qemu_log, "wb") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = time.time()
        self.state_file.write_text(
            json.dumps(
                {
                    "pid": proc.pid,
                    "started": started,
                    "command": command,
                    "accel": accel,
                    "spec": asdict(spec),
                }
            )
        )
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise VMError(f"QEMU exited at start ({proc.returncode}): {self._last_log_line()}")
            try:
                with self.qmp() as qmp:
                    version = qmp.cmd("query-version")
                break
            except Exception:  # not listening yet, or QEMU quit while we connected
                if proc.poll() is not None:
                    continue
                if time.monotonic() > deadline:
                    raise VMError(f"QMP did not answer within {timeout:.0f} s") from None
                time.sleep(0.05)
        q = version["qemu"]
        return {
            "pid": proc.pid,
            "accel": accel,
            "command": command,
            "qemu_version": f"{q['major']}.{q['minor']}.{q['micro']}",
            "qemu_package": str(version.get("package", "")).strip(),
        }

    def _last_log_line(self) -> str:
        try:
            lines = self.qemu_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no output"
        return lines[-1] if lines else "no output"

    @contextmanager
    def qmp(self) -> Iterator[QEMUMonitorProtocol]:
        if not self.qmp_socket.exists():
            raise VMError(f"no QMP socket for VM {self.dir.name!r}")
        qmp = QEMUMonitorProtocol(str(self.qmp_socket))
        try:
            qmp.connect()
            yield qmp
        finally:
            qmp.close()

    def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        with self.qmp() as qmp:
            return qmp.cmd(command, **(args or {}))

    def hmp(self, command_line: str) -> str:
        return str(self.execute("human-monitor-command", {"command-line": command_line}))

    def stop(self, timeout: float = 15.0) -> dict[str, Any]:
        """Quit QEMU (QMP quit, then SIGTERM, then SIGKILL) and report how it ended."""
        if not self.state_file.exists():
            return {"stopped": False, "reason": "no such VM"}
        pid = self.pid()
        how = "quit"
        if self.alive():
            try:
                self.execute("quit")
            except Exception as exc:  # QEMU may close QMP before answering
                LOG.debug("quit: %s", exc)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not self.alive():
                    break
                how = sig.name
                os.kill(pid, sig)
                time.sleep(1)
        else:
            how = "already exited"
        return {"stopped": True, "how": how, "qemu_log_tail": self._last_log_line()}

    # -- the guest ---------------------------------------------------------------------
    def console_text(self, offset: int = 0) -> str:
        try:
            with open(self.serial_log, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        pattern = re.compile(READY_PATTERN)
        while True:
            match = pattern.search(self.console_text())
            if match:
                return {
                    "seconds": round(time.time() - float(self.state()["started"]), 3),
                    "arch": match.group(1),
                    "kernel": match.group(2),
                    "root": match.group(3),
                    "net": match.group(4),
                }
            if not self.alive():
                raise VMError(f"QEMU exited before the guest was ready: {self._last_log_line()}")
            if time.monotonic() > deadline:
                tail = self.console_text()[-200:]
                raise VMError(f"the guest was not ready within {timeout:.0f} s: {tail!r}")
            time.sleep(0.1)

    def run(self, command: str, timeout: float = 60.0) -> dict[str, Any]:
        """A shell command in the guest; its output without the background programs'
        console lines."""
        console = SerialConsole(str(self.serial_socket))
        console.connect(timeout=5)
        try:
            result = console.run(command, timeout)
        finally:
            console.close()
        lines = [ln for ln in result.output.splitlines() if not BACKGROUND.match(ln)]
        return {"output": "\n".join(lines), "status": result.status}

    def send(self, text: str) -> None:
        console = SerialConsole(str(self.serial_socket))
        console.connect(timeout=5)
        try:
            console.write(text)
            time.sleep(0.2)  # let QEMU take it before the connection closes
        finally:
            console.close()

    # -- guest memory ----------------------------------------------------------------------
    def ram_hashes(self, mem_mb: int) -> dict[str, Any]:
        """Dump guest RAM (pmemsave; the VM must be paused) and hash every page."""
        size = mem_mb << 20
        status = self.execute("query-status")["status"]
        if self.dump_file.exists():
            self.dump_file.unlink()
        started = time.monotonic()
        self.execute("pmemsave", {"val": RAM_BASE, "size": size, "filename": str(self.dump_file)})
        digests = bytearray()
        with open(self.dump_file, "rb") as f:
            while page := f.read(PAGE):
                digests += hashlib.blake2b(page, digest_size=HASH_BYTES).digest()
        if len(digests) != (size // PAGE) * HASH_BYTES:
            raise VMError(
                f"the RAM dump is {len(digests) // HASH_BYTES} pages, expected {size // PAGE}"
            )
        return {
            "pages": size // PAGE,
            "status": status,
            "hash_bytes": HASH_BYTES,
            "hashes": base64.b64encode(bytes(digests)).decode(),
            "seconds": round(time.monotonic() - started, 3),
        }

    def ram_peek(self, pages: list[int], length: int = 32) -> dict[str, str]:
        found = {}
        with open(self.dump_file, "rb") as f:
            for page in pages:
                f.seek(page * PAGE)
                found[str(page)] = f.read(length).hex()
        return found

    def ram_drop(self) -> None:
        if self.dump_file.exists():
            self.dump_file.unlink()

    def poke(self, page: int, data: bytes) -> dict[str, Any]:
        """Overwrite the start of guest physical page ``page`` (from RAM's base) through
        the gdbstub; the VM's run state is left as it was."""
        spec = self.state()["spec"]
        if not spec.get("gdb_port"):
            raise VMError("this VM was started without a gdbstub (gdb_port)")
        before = self.execute("query-status")["status"]
        address = RAM_BASE + page * PAGE
        gdb = GdbRemote("127.0.0.1", int(spec["gdb_port"]))
        try:
            gdb.write_physical(address, data)
        finally:
            gdb.close()
        after = self.execute("query-status")["status"]
        return {
            "page": page,
            "address": hex(address),
            "bytes": len(data),
            "status_before": before,
            "status_after": after,
        }
