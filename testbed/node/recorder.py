"""Records a small real migration stream for the parser's tests.

``python3 -m testbed.node record-stream --arch armv8 --out FILE`` starts a paused QEMU
(16 MiB of zero RAM, the guest never runs) with an ivshmem device on a 64 KiB file filled
with a known pattern, migrates it into a unix socket, and writes what arrives to FILE.
The stream thus holds zero pages of main RAM and the pattern's pages in the ``/shm``
block."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.node.machine import Machine, MachinePaths
from testbed.node.vmconfig import guest_config
from testbed.protocol import VmSpec

SHM_SIZE = 64 * 1024
RAM_MB = 16


@dataclass(frozen=True)
class Recording:
    file: str
    bytes: int
    status: str
    qemu_version: str
    arch: str
    ram_mb: int
    shm_size: int


def pattern(size: int = SHM_SIZE) -> bytes:
    """Deterministic, every page different, no zero page."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


async def _record(arch: str, out: Path, work: Path) -> Recording:
    shm = work / "shm"
    shm.write_bytes(pattern())
    stream_path = work / "stream.sock"
    received = bytearray()
    done = asyncio.Event()

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 16):
            received.extend(chunk)
        writer.close()
        done.set()

    server = await asyncio.start_unix_server(receive, str(stream_path))
    spec = VmSpec(
        arch=arch,
        accel="tcg",
        mem_mb=RAM_MB,
        paused=True,
        shm_path=str(shm),
        shm_size=f"{SHM_SIZE // 1024}K",
        shm_first=True,
    )
    paths = MachinePaths.under(work, "record")
    async with server, Machine(spec, guest_config(spec, paths, "tcg"), paths, False) as vm:
        await vm.launch()
        await vm.execute("migrate", {"uri": f"unix:{stream_path}"})
        await asyncio.wait_for(done.wait(), 60)
        status = "none"
        for _ in range(100):
            info = await vm.execute("query-migrate")
            status = str(info.get("status")) if isinstance(info, dict) else "none"
            if status in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
        version = vm.qemu_version
    out.write_bytes(bytes(received))
    return Recording(str(out), len(received), status, version, arch, RAM_MB, SHM_SIZE)


def record(arch: str, out: Path) -> Recording:
    with tempfile.TemporaryDirectory(prefix="testbed-record-") as tmp:
        return asyncio.run(_record(arch, out, Path(tmp)))
