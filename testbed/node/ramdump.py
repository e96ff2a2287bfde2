"""Guest RAM of a paused VM, dumped through QMP and digested, per MiB then per page.

QMP ``dump-guest-memory`` (plain ELF, no paging) writes every RAM block page by page from
QEMU's own mapping.  The agent hands QEMU a FIFO as the dump's file and hashes the stream
as it comes: a SHA-256 prefix per MiB of guest RAM, with no file written and nothing to
delete (half the time of writing 512 MiB to a file, reading it back and unlinking it).
Only when the MiB digests differ, or a negative control looks for a page, is RAM dumped
again to a file and *kept*: the pages' CRC-32s and heads are read from it, after its MiB
digests are checked against the streamed ones (the VM must not have run in between).
(``pmemsave`` reads 1 KiB at a time through the memory API: about three times slower.)"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from testbed.node.machine import Machine
from testbed.protocol import RamDigest

LOG = logging.getLogger(__name__)

RAM_BASE = 0x40000000  # guest RAM starts here on QEMU's virt machine (arm and aarch64)
PAGE = 4096
BLOCK = 1 << 20
PT_LOAD = 1
ELF_HEADER = 64  # bytes of an ELF64 header; an ELF32 header is shorter
F_SETPIPE_SZ = 1031  # fcntl: a 1 MiB pipe lets QEMU write a whole block at once


class DumpEndedEarly(ValueError):
    """The dump's stream ended before all of guest RAM (QEMU failed, or was killed)."""


class DumpLayoutError(ValueError):
    """Guest RAM is not in the dump in one ascending run (it cannot be hashed as it
    streams; the file dump, which reads it where it is, can)."""


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


def program_headers_end(header: bytes) -> int:
    """Where an ELF file's program headers end (from its first bytes)."""
    if len(header) < 0x34 or header[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    if header[4] == 2:
        if len(header) < ELF_HEADER:
            raise ValueError("the ELF header is cut short")
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
    else:
        (phoff,) = struct.unpack_from("<I", header, 0x1C)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x2A)
    return int(phoff + phentsize * phnum)


def ram_spans(segments: list[Segment], size: int) -> list[tuple[int, int, int]]:
    """(start in RAM, end in RAM, file offset of start) of the parts of ``segments`` that
    hold guest RAM, in the order of the file; they must cover all ``size`` bytes."""
    spans = []
    for seg in segments:
        start = max(seg.paddr, RAM_BASE)
        end = min(seg.paddr + seg.size, RAM_BASE + size)
        if start < end:
            spans.append((start - RAM_BASE, end - RAM_BASE, seg.offset + start - seg.paddr))
    spans.sort(key=lambda span: span[2])
    covered = sum(end - start for start, end, _ in spans)
    if covered != size:
        raise RuntimeError(f"the dump covers {covered} of the {size} bytes of guest RAM")
    return spans


class Readable(Protocol):
    """What a dump is read from: a pipe's file object (or, in tests, anything alike)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _read_into(stream: Readable, view: memoryview) -> int:
    """Fill ``view`` from ``stream``; fewer bytes only at the stream's end."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def stream_block_digests(stream: Readable, size: int) -> bytes:
    """SHA-256 prefixes, 8 bytes per MiB of guest RAM, of an ELF dump read once, front to
    back (from a pipe).  Raises DumpLayoutError when RAM is not in it in one ascending
    run, ValueError when the stream ends early."""
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    got = _read_into(stream, view[:ELF_HEADER])
    header = bytes(buffer[:got])
    end = program_headers_end(header)
    if end > got:
        extra = bytearray(end - got)
        if _read_into(stream, memoryview(extra)) < len(extra):
            raise DumpEndedEarly("the dump ended in its program headers")
        header += bytes(extra)
    position = max(end, got)
    spans = ram_spans(load_segments(header), size)
    ram = 0
    for start, stop, offset in spans:
        if start != ram or offset < position:
            raise DumpLayoutError("guest RAM is not in the dump in one ascending run")
        ram = stop
    digests = bytearray()
    scratch = memoryview(bytearray(1 << 16))  # what lies between spans: never into a block
    for start, stop, offset in spans:
        while position < offset:  # notes and anything else between the RAM segments
            n = _read_into(stream, scratch[: min(len(scratch), offset - position)])
            if not n:
                raise DumpEndedEarly(f"the dump ended at byte {position}, before guest RAM")
            position += n
        ram = start
        while ram < stop:
            # whole MiB blocks of RAM, so that each block is hashed at once
            block_end = min(stop, (ram // BLOCK + 1) * BLOCK)
            fill = ram % BLOCK
            n = _read_into(stream, view[fill : fill + block_end - ram])
            if n < block_end - ram:
                raise DumpEndedEarly(
                    f"the dump ended at guest RAM offset {ram + n:#x} of {size:#x}"
                )
            ram, position = block_end, position + n
            if ram % BLOCK == 0 or ram == size:
                digests += hashlib.sha256(view[: (ram - 1) % BLOCK + 1]).digest()[:8]
    while _read_into(stream, view):  # whatever QEMU writes after RAM
        pass
    return bytes(digests)


class KeptDump:
    """Guest RAM as the dump file holds it: read where needed, never all copied (a 512 MiB
    buffer costs a second in page faults alone)."""

    def __init__(self, path: Path, size: int, segments: list[Segment]) -> None:
        self.path = path
        self.size = size
        # (start in RAM, end in RAM, file offset of start), in RAM's order
        try:
            self.spans = sorted(ram_spans(segments, size))
        except RuntimeError:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        self.fd = os.open(path, os.O_RDONLY)

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


async def _dump_to_file(machine: Machine) -> tuple[KeptDump, bytes]:
    """Dump guest RAM to a file, keep it, digest it per MiB."""
    size = machine.spec.mem_mb << 20
    path = machine.paths.dir / "ram.elf"
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
    return kept, blocks


def _digest_fifo(fd: int, size: int) -> bytes:
    """The reading end of the dump's FIFO (opened non-blocking), hashed to its end."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, BLOCK)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb", buffering=0) as stream:
        return stream_block_digests(stream, size)


async def _dump_streamed(machine: Machine) -> bytes:
    """Dump guest RAM into a FIFO and hash it as QEMU writes it.

    The agent holds a writing end of its own until QEMU's command has returned: the
    reader then sees the end of the stream whatever happened (QEMU never opened the FIFO,
    failed half way, or finished), and never blocks for good."""
    size = machine.spec.mem_mb << 20
    fifo = machine.paths.dir / "ram.fifo"
    with contextlib.suppress(FileNotFoundError):
        fifo.unlink()
    os.mkfifo(fifo, 0o600)
    try:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            keeper = os.open(fifo, os.O_WRONLY)
        except BaseException:
            os.close(reader)
            raise
        digests: concurrent.futures.Future[bytes] = concurrent.futures.Future()

        def work() -> None:  # owns the reader from here on, whatever happens to us
            try:
                digests.set_result(_digest_fifo(reader, size))
            except BaseException as exc:
                digests.set_exception(exc)

        threading.Thread(target=work, name=f"ram-digest-{machine.name}", daemon=True).start()
        hashing = asyncio.wrap_future(digests)
        failure: Exception | None = None
        try:
            await machine.execute(
                "dump-guest-memory",
                {"paging": False, "protocol": f"file:{fifo}", "detach": False},
            )
        except Exception as exc:
            failure = exc
        finally:
            os.close(keeper)
            await asyncio.wait([hashing])  # the thread ends at the stream's end
        if failure is None or not isinstance(hashing.exception(), (DumpEndedEarly, type(None))):
            return hashing.result()  # the digests, or why the stream could not be hashed
        raise failure  # QEMU's own reason beats "the stream ended early"
    finally:
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()


async def digest_ram(machine: Machine) -> RamDigest:
    """Guest RAM (the VM should be paused) digested per MiB, streamed from QEMU's dump."""
    size = machine.spec.mem_mb << 20
    status = await machine.status()
    started = time.monotonic()
    try:
        blocks = await _dump_streamed(machine)
    except DumpLayoutError as exc:
        LOG.info("%s: %s; dumping to a file instead", machine.name, exc)
        kept, blocks = await _dump_to_file(machine)
        kept.close()
    return RamDigest(
        pages=size // PAGE,
        block_sha256=base64.b64encode(blocks).decode(),
        status=status,
        seconds=round(time.monotonic() - started, 3),
    )


async def keep(machine: Machine, digested: RamDigest) -> KeptDump:
    """Guest RAM dumped to a file and kept (for page digests, peeks and searches), after
    checking that it is still the RAM that was digested."""
    kept, blocks = await _dump_to_file(machine)
    if base64.b64encode(blocks).decode() != digested.block_sha256:
        kept.close()
        raise RuntimeError(
            f"guest RAM of VM {machine.name!r} changed since it was digested (did it run?); "
            "pause it and dump it again"
        )
    return kept
