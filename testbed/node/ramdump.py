"""Guest RAM of a paused VM, dumped through QMP and digested page by page.

QMP ``dump-guest-memory`` (plain ELF, no paging) writes every RAM block page by page from
QEMU's own mapping; the agent reads the PT_LOAD segments that cover guest RAM back into
memory.  (``pmemsave`` reads 1 KiB at a time through the memory API: about three times
slower for 512 MiB.)  Per page a CRC-32 (to list the differing pages), per MiB a SHA-256
prefix (so a difference that CRC-32 cannot see still fails the comparison).  The dump
stays in memory for peeks at the differing pages until it is dropped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from testbed.node.machine import Machine
from testbed.protocol import RamDigest

RAM_BASE = 0x40000000  # guest RAM starts here on QEMU's virt machine (arm and aarch64)
PAGE = 4096
BLOCK = 1 << 20
PT_LOAD = 1


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


@dataclass(frozen=True)
class Segment:
    offset: int  # in the file
    paddr: int  # guest-physical address
    size: int  # bytes in the file


def load_segments(header: bytes) -> list[Segment]:
    """The PT_LOAD segments of an ELF core (32 or 64 bit, little-endian)."""
    if header[:4] != b"\x7fELF" or header[5] != 1:
        raise ValueError("not a little-endian ELF file")
    if header[4] == 2:  # ELFCLASS64
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        fmt, fields = "<IIQQQQQQ", (0, 2, 4, 5)  # type, offset, paddr, filesz
    elif header[4] == 1:  # ELFCLASS32
        (phoff,) = struct.unpack_from("<I", header, 0x1C)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x2A)
        fmt, fields = "<IIIIIIII", (0, 1, 3, 4)
    else:
        raise ValueError(f"unknown ELF class {header[4]}")
    segments = []
    for i in range(phnum):
        start = phoff + i * phentsize
        if start + struct.calcsize(fmt) > len(header):
            raise ValueError("the program headers run past the ELF header read")
        values = struct.unpack_from(fmt, header, start)
        kind, offset, paddr, size = (values[f] for f in fields)
        if kind == PT_LOAD:
            segments.append(Segment(offset, paddr, size))
    return segments


def read_ram(path: Path, size: int) -> bytearray:
    """Guest RAM from RAM_BASE, ``size`` bytes, out of the ELF core at ``path``."""
    data = bytearray(size)
    view = memoryview(data)
    covered = 0
    with open(path, "rb") as f:
        segments = load_segments(f.read(1 << 16))
        fd = f.fileno()
        for seg in segments:
            start = max(seg.paddr, RAM_BASE)
            end = min(seg.paddr + seg.size, RAM_BASE + size)
            if start >= end:
                continue  # another block (ROM, a device's memory)
            got = os.preadv(
                fd, [view[start - RAM_BASE : end - RAM_BASE]], seg.offset + start - seg.paddr
            )
            if got != end - start:
                raise RuntimeError(f"the dump ended inside the segment at {seg.paddr:#x}")
            covered += got
    if covered != size:
        raise RuntimeError(f"the dump covers {covered} of the {size} bytes of guest RAM")
    return data


async def dump(machine: Machine) -> tuple[RamDigest, KeptDump]:
    """Dump and digest the whole of guest RAM (the VM should be paused)."""
    size = machine.spec.mem_mb << 20
    status = await machine.status()
    path = machine.paths.dir / "ram.elf"
    started = time.monotonic()
    try:
        await machine.execute(
            "dump-guest-memory",
            {"paging": False, "protocol": f"file:{path}", "detach": False},
        )
        data = await asyncio.to_thread(read_ram, path, size)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    crcs, blocks = await asyncio.to_thread(digest, data)
    result = RamDigest(
        pages=size // PAGE,
        page_crc32=base64.b64encode(crcs).decode(),
        block_sha256=base64.b64encode(blocks).decode(),
        status=status,
        seconds=round(time.monotonic() - started, 3),
    )
    return result, KeptDump(data)
