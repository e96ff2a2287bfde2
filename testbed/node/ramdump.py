"""Guest RAM of a paused VM, dumped through QMP ``pmemsave`` and digested page by page.

QEMU writes the dump into a FIFO that the agent reads at the same time, so nothing goes
to disk.  Per page a CRC-32 (to list the differing pages), per MiB a SHA-256 prefix (so a
difference that CRC-32 cannot see still fails the comparison).  The dump stays in memory
for peeks at the differing pages until it is dropped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from testbed.node.machine import Machine
from testbed.protocol import RamDigest

RAM_BASE = 0x40000000  # guest RAM starts here on QEMU's virt machine (arm and aarch64)
PAGE = 4096
BLOCK = 1 << 20
F_SETPIPE_SZ = 1031


@dataclass
class KeptDump:
    data: bytearray

    def head(self, page: int, length: int) -> bytes:
        return bytes(self.data[page * PAGE : page * PAGE + length])

    def find_heads(self, head: bytes, limit: int) -> list[int]:
        """Pages that start with ``head``."""
        found: list[int] = []
        at = self.data.find(head)
        while at >= 0 and len(found) < limit:
            if at % PAGE == 0:
                found.append(at // PAGE)
                at = self.data.find(head, at + PAGE)
            else:
                at = self.data.find(head, at - at % PAGE + PAGE)
        return found


def digest(data: bytes | bytearray) -> tuple[bytes, bytes]:
    """(per-page CRC-32 as little-endian u32s, per-MiB SHA-256 prefixes of 8 bytes)."""
    view = memoryview(data)
    crcs = bytearray()
    for offset in range(0, len(view), PAGE):
        crcs += zlib.crc32(view[offset : offset + PAGE]).to_bytes(4, "little")
    blocks = bytearray()
    for offset in range(0, len(view), BLOCK):
        blocks += hashlib.sha256(view[offset : offset + BLOCK]).digest()[:8]
    return bytes(crcs), bytes(blocks)


def _read_fifo(path: Path, size: int) -> bytearray:
    data = bytearray(size)
    view = memoryview(data)
    got = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
        while got < size:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                break
            got += n
    finally:
        os.close(fd)
    if got != size:
        raise RuntimeError(f"the RAM dump ended after {got} of {size} bytes")
    return data


async def dump(machine: Machine) -> tuple[RamDigest, KeptDump]:
    """Dump and digest the whole of guest RAM (the VM should be paused)."""
    size = machine.spec.mem_mb << 20
    status = await machine.status()
    fifo = machine.paths.dir / "ram.fifo"
    with contextlib.suppress(FileNotFoundError):
        fifo.unlink()
    os.mkfifo(fifo)
    started = time.monotonic()
    try:
        reader = asyncio.create_task(asyncio.to_thread(_read_fifo, fifo, size))
        try:
            await machine.execute(
                "pmemsave", {"val": RAM_BASE, "size": size, "filename": str(fifo)}
            )
        except BaseException:
            # unblock the reader if QEMU never opened the FIFO
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            with contextlib.suppress(Exception):
                await reader
            raise
        data = await reader
    finally:
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()
    crcs, blocks = await asyncio.to_thread(digest, data)
    result = RamDigest(
        pages=size // PAGE,
        page_crc32=base64.b64encode(crcs).decode(),
        block_sha256=base64.b64encode(blocks).decode(),
        status=status,
        seconds=round(time.monotonic() - started, 3),
    )
    return result, KeptDump(data)
