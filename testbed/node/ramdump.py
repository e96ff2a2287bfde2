"""Guest RAM of a paused VM, dumped through QMP and digested, per MiB then per page.

QMP ``dump-guest-memory`` (plain ELF, no paging) writes every RAM block page by page from
QEMU's own mapping; the agent reads the PT_LOAD segments that cover guest RAM back into
memory.  (``pmemsave`` reads 1 KiB at a time through the memory API: about three times
slower for 512 MiB.)  A SHA-256 prefix per MiB is compared first; only the blocks that
differ get a CRC-32 per page, to list the differing pages (a block that differs while no
page CRC does still fails the comparison).  The dump stays in memory for the page
digests and peeks until it is dropped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed.node.machine import Machine
from testbed.protocol import RamDigest

RAM_BASE = 0x40000000  # guest RAM starts here on QEMU's virt machine (arm and aarch64)
PAGE = 4096
BLOCK = 1 << 20
PT_LOAD = 1


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


class KeptDump:
    """Guest RAM as the dump file holds it: read where needed, never all copied (a 512 MiB
    buffer costs a second in page faults alone)."""

    def __init__(self, path: Path, size: int, segments: list[Segment]) -> None:
        self.path = path
        self.size = size
        self.fd = os.open(path, os.O_RDONLY)
        # (start in RAM, end in RAM, file offset of start), sorted
        self.spans: list[tuple[int, int, int]] = []
        for seg in segments:
            start = max(seg.paddr, RAM_BASE)
            end = min(seg.paddr + seg.size, RAM_BASE + size)
            if start < end:
                self.spans.append(
                    (start - RAM_BASE, end - RAM_BASE, seg.offset + start - seg.paddr)
                )
        self.spans.sort()
        covered = sum(end - start for start, end, _ in self.spans)
        if covered != size:
            self.close()
            raise RuntimeError(f"the dump covers {covered} of the {size} bytes of guest RAM")

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes of guest RAM from ``offset`` (from RAM's base)."""
        out = bytearray()
        for start, end, file_offset in self.spans:
            if offset >= end or offset + length <= start:
                continue
            lo, hi = max(offset, start), min(offset + length, end)
            out += os.pread(self.fd, hi - lo, file_offset + lo - start)
        return bytes(out)

    def head(self, page: int, length: int) -> bytes:
        return self.read(page * PAGE, length)

    def blocks(self) -> Iterator[bytes]:
        """Guest RAM, one MiB at a time."""
        for offset in range(0, self.size, BLOCK):
            yield self.read(offset, min(BLOCK, self.size - offset))

    def find_heads(self, head: bytes, limit: int) -> list[int]:
        """Pages that start with ``head``."""
        found: list[int] = []
        for number, block in enumerate(self.blocks()):
            at = block.find(head)
            while at >= 0 and len(found) < limit:
                if at % PAGE == 0:
                    found.append((number * BLOCK + at) // PAGE)
                    at = block.find(head, at + PAGE)
                else:
                    at = block.find(head, at - at % PAGE + PAGE)
            if len(found) >= limit:
                break
        return found

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def block_digests(data: bytes | bytearray | Iterable[bytes]) -> bytes:
    """SHA-256 prefixes, 8 bytes per MiB (of a buffer, or of MiB blocks as they come)."""
    if isinstance(data, (bytes, bytearray)):
        view = memoryview(data)
        return b"".join(
            hashlib.sha256(view[offset : offset + BLOCK]).digest()[:8]
            for offset in range(0, len(view), BLOCK)
        )
    return b"".join(hashlib.sha256(block).digest()[:8] for block in data)


def page_crcs(data: bytes | bytearray | KeptDump, block: int) -> bytes:
    """CRC-32 of each page of MiB block ``block``, little-endian u32s."""
    if isinstance(data, KeptDump):
        view = memoryview(data.read(block * BLOCK, BLOCK))
    else:
        view = memoryview(data)[block * BLOCK : (block + 1) * BLOCK]
    crcs = bytearray()
    for offset in range(0, len(view), PAGE):
        crcs += zlib.crc32(view[offset : offset + PAGE]).to_bytes(4, "little")
    return bytes(crcs)


def digest(data: bytes | bytearray) -> tuple[bytes, bytes]:
    """(per-page CRC-32 as little-endian u32s, per-MiB SHA-256 prefixes of 8 bytes)."""
    crcs = b"".join(page_crcs(data, b) for b in range((len(data) + BLOCK - 1) // BLOCK))
    return crcs, block_digests(data)


def open_dump(path: Path, size: int) -> KeptDump:
    with open(path, "rb") as f:
        segments = load_segments(f.read(1 << 16))
    return KeptDump(path, size, segments)


async def dump(machine: Machine) -> tuple[RamDigest, KeptDump]:
    """Dump guest RAM (the VM should be paused) and digest it per MiB; the dump file is
    kept (for page digests and peeks) until the KeptDump is closed."""
    size = machine.spec.mem_mb << 20
    status = await machine.status()
    path = machine.paths.dir / "ram.elf"
    started = time.monotonic()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    await machine.execute(
        "dump-guest-memory", {"paging": False, "protocol": f"file:{path}", "detach": False}
    )
    kept = await asyncio.to_thread(open_dump, path, size)
    try:
        blocks = await asyncio.to_thread(block_digests, kept.blocks())
    except BaseException:
        kept.close()
        raise
    result = RamDigest(
        pages=size // PAGE,
        block_sha256=base64.b64encode(blocks).decode(),
        status=status,
        seconds=round(time.monotonic() - started, 3),
    )
    return result, kept
