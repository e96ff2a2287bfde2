"""Records a small real migration stream for the parser's tests.

``python3 -m testbed.node record-stream --arch armv8 --out FILE`` starts a paused QEMU
(16 MiB of zero RAM, no guest) with an ivshmem device on a 64 KiB file filled with a
known pattern, migrates it into a unix socket, and writes what arrives to FILE.  The
stream thus holds zero pages of main RAM and the pattern's pages in the ``/shm`` block."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from testbed.arch import get_arch

SHM_SIZE = 64 * 1024
RAM_MB = 16


def pattern(size: int = SHM_SIZE) -> bytes:
    """Deterministic, every page different, no zero page."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


def record(arch_name: str, out: Path) -> dict[str, Any]:
    arch = get_arch(arch_name)
    with tempfile.TemporaryDirectory(prefix="testbed-record-") as tmp:
        work = Path(tmp)
        shm = work / "shm"
        shm.write_bytes(pattern())
        qmp_path, sock_path = work / "qmp.sock", work / "stream.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock_path))
        listener.listen(1)
        received = bytearray()

        def receive() -> None:
            conn, _ = listener.accept()
            with conn:
                while chunk := conn.recv(1 << 16):
                    received.extend(chunk)

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        proc = subprocess.Popen(
            [
                arch.qemu_binary,
                "-machine",
                "virt",
                "-accel",
                "tcg",
                "-cpu",
                arch.tcg_cpu,
                "-m",
                str(RAM_MB),
                "-nodefaults",
                "-display",
                "none",
                "-S",
                "-object",
                f"memory-backend-file,id=shm,mem-path={shm},size={SHM_SIZE},share=on",
                "-device",
                "ivshmem-plain,memdev=shm,master=on",
                "-qmp",
                f"unix:{qmp_path},server=on,wait=off",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            qmp = QEMUMonitorProtocol(str(qmp_path))
            for _ in range(200):
                try:
                    qmp.connect()
                    break
                except Exception:
                    time.sleep(0.05)
            version = qmp.cmd("query-version")
            qmp.cmd("migrate", uri=f"unix:{sock_path}")
            while qmp.cmd("query-migrate").get("status") not in ("completed", "failed"):
                time.sleep(0.05)
            status = qmp.cmd("query-migrate")["status"]
            try:
                qmp.cmd("quit")
                qmp.close()
            except Exception:  # QEMU closes QMP as it quits
                pass
        finally:
            proc.wait(timeout=10)
            thread.join(timeout=10)
            listener.close()
    out.write_bytes(bytes(received))
    q = version["qemu"]
    return {
        "file": str(out),
        "bytes": len(received),
        "status": status,
        "qemu_version": f"{q['major']}.{q['minor']}.{q['micro']}",
        "arch": arch_name,
        "ram_mb": RAM_MB,
        "shm_size": SHM_SIZE,
    }
