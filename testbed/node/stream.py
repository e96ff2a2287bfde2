"""A parser of QEMU's migration stream (QEMU 7.2 to 10.x), for the RAM section.

Stock QEMU has no command that returns a RAM dirty bitmap; its migration stream is its
dirty log made visible.  The replication daemon migrates to itself and reads the pages of
one RAM block (the shared-memory device's) out of the stream.

Format (migration/savevm.c, migration/ram.c), big-endian throughout:

    be32 'QEVM'  be32 version (3)
    0x07 CONFIGURATION  be32 len, machine name, then subsections
                        (0x05, u8 len, name, be32 version, fields)
    0x01 START  be32 section_id, u8 len, idstr, be32 instance_id, be32 version_id, data, footer
    0x02 PART   be32 section_id, data, footer
    0x03 END    be32 section_id, data, footer
    0x08 COMMAND  be16 command, be16 len, len bytes (10.x sends one before END)
    0x7e FOOTER be32 section_id
    0x04 FULL (device state), 0x06 VMDESCRIPTION, 0x00 EOF: after the RAM END section,
                        read to EOF without parsing

RAM data is a list of records ``be64 offset | flags`` (flags in the bits below the target
page size): MEM_SIZE 0x04 (setup: the blocks, u8 len + idstr + be64 used_length each),
ZERO 0x02 (u8 fill byte), PAGE 0x08 (one target page), EOS 0x10 (end of the section's
RAM data), CONTINUE 0x20 (same block as before; without it u8 len + idstr follow the
header), MULTIFD_FLUSH 0x200 (8.x and later; no payload).  XBZRLE, compression and RDMA
hooks are refused: the daemon disables them.

A malformed or unsupported stream raises :class:`StreamError` naming the byte offset and
the problem; the parser never returns a partial success."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

MAGIC = 0x5145564D  # "QEVM"
VERSION = 3

VM_EOF = 0x00
SECTION_START = 0x01
SECTION_PART = 0x02
SECTION_END = 0x03
SECTION_FULL = 0x04
SUBSECTION = 0x05
VMDESCRIPTION = 0x06
CONFIGURATION = 0x07
COMMAND = 0x08
FOOTER = 0x7E

FLAG_ZERO = 0x02
FLAG_MEM_SIZE = 0x04
FLAG_PAGE = 0x08
FLAG_EOS = 0x10
FLAG_CONTINUE = 0x20
FLAG_XBZRLE = 0x40
FLAG_HOOK = 0x80
FLAG_COMPRESS = 0x100
FLAG_MULTIFD_FLUSH = 0x200
KNOWN_FLAGS = FLAG_ZERO | FLAG_MEM_SIZE | FLAG_PAGE | FLAG_EOS | FLAG_CONTINUE | FLAG_MULTIFD_FLUSH
UNSUPPORTED = {FLAG_XBZRLE: "xbzrle", FLAG_HOOK: "RDMA hook", FLAG_COMPRESS: "compression"}


class StreamError(Exception):
    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"migration stream, byte {offset}: {problem}")
        self.offset = offset
        self.problem = problem


# on_page(block, offset, data): data is the page, or None for a zero page
PageCallback = Callable[[str, int, bytes | None], None]
SectionCallback = Callable[[int, int], None]  # (section type, pages in that section)


@dataclass
class StreamStats:
    machine: str = ""
    page_size: int = 4096
    blocks: dict[str, int] = field(default_factory=dict)  # idstr -> used length
    sections: int = 0
    parts: int = 0
    pages: int = 0
    zero_pages: int = 0
    pages_by_block: dict[str, int] = field(default_factory=dict)
    commands: int = 0
    completed: bool = False  # the RAM END section was read
    bytes_read: int = 0


class _Reader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.offset = 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        while data is not None and 0 < len(data) < n:  # sockets may return short reads
            more = self.f.read(n - len(data))
            if not more:
                break
            data += more
        if data is None or len(data) < n:
            raise StreamError(
                self.offset, f"truncated: wanted {n} bytes, got {0 if data is None else len(data)}"
            )
        self.offset += n
        return data

    def u8(self) -> int:
        return self.read(1)[0]

    def be16(self) -> int:
        return int(struct.unpack(">H", self.read(2))[0])

    def be32(self) -> int:
        return int(struct.unpack(">I", self.read(4))[0])

    def be64(self) -> int:
        return int(struct.unpack(">Q", self.read(8))[0])

    def idstr(self) -> str:
        return self.read(self.u8()).decode("latin-1")

    def drain(self) -> int:
        n = 0
        while chunk := self.f.read(1 << 16):
            n += len(chunk)
        self.offset += n
        return n


class MigrationStreamParser:
    def __init__(
        self,
        f: BinaryIO,
        on_page: PageCallback | None = None,
        on_section: SectionCallback | None = None,
    ) -> None:
        self.r = _Reader(f)
        self.on_page = on_page
        self.on_section = on_section
        self.stats = StreamStats()
        self._ram_section: int | None = None
        self._block: str | None = None

    def fail(self, problem: str) -> StreamError:
        return StreamError(self.r.offset, problem)

    def parse(self) -> StreamStats:
        """Read the stream up to the end of the RAM section, then drain it to EOF."""
        r = self.r
        if (magic := r.be32()) != MAGIC:
            raise StreamError(0, f"wrong magic {magic:#010x} (not a QEMU migration stream)")
        if (version := r.be32()) != VERSION:
            raise self.fail(f"unsupported stream version {version}")
        while True:
            kind = r.u8()
            if kind == CONFIGURATION:
                self._configuration()
            elif kind == SECTION_START:
                self._start()
            elif kind in (SECTION_PART, SECTION_END):
                self._part(kind)
                if kind == SECTION_END:
                    self.stats.completed = True
                    r.drain()  # device state, VM description, EOF
                    break
            elif kind == COMMAND:
                command, length = r.be16(), r.be16()
                r.read(length)
                self.stats.commands += 1
                del command
            elif kind in (SECTION_FULL, VMDESCRIPTION, VM_EOF):
                raise self.fail(
                    f"stream ended (section type {kind:#x}) before the RAM section was complete"
                )
            else:
                raise self.fail(f"unknown section type {kind:#x}")
        self.stats.bytes_read = r.offset
        return self.stats

    def _configuration(self) -> None:
        r = self.r
        self.stats.machine = r.read(r.be32()).decode("latin-1")
        page_bits = None
        while self._peek() == SUBSECTION:
            r.u8()
            name = r.idstr()
            r.be32()  # version
            if name == "configuration/target-page-bits":
                page_bits = r.be32()
            elif name == "configuration/capabilities":
                for _ in range(r.be32()):
                    r.idstr()
            elif name == "configuration/uuid":
                r.read(16)
            else:
                raise self.fail(f"unknown configuration subsection {name!r}")
        if page_bits is not None:
            if not 10 <= page_bits <= 16:
                raise self.fail(f"implausible target page bits {page_bits}")
            self.stats.page_size = 1 << page_bits

    def _peek(self) -> int:
        f = self.r.f
        peek = getattr(f, "peek", None)
        if peek is None:
            raise self.fail("the stream reader cannot peek (wrap it in io.BufferedReader)")
        data = peek(1)
        if not data:
            raise self.fail("truncated after the configuration")
        return int(data[0])

    def _start(self) -> None:
        r = self.r
        section_id = r.be32()
        idstr = r.idstr()
        r.be32()  # instance id
        r.be32()  # version id
        if idstr != "ram":
            raise self.fail(f"unsupported iterative section {idstr!r} (only 'ram' is parsed)")
        if self._ram_section is not None:
            raise self.fail("a second RAM section")
        self._ram_section = section_id
        self._ram_data(setup=True)
        self._footer(section_id)
        self.stats.sections += 1

    def _part(self, kind: int) -> None:
        r = self.r
        section_id = r.be32()
        if section_id != self._ram_section:
            raise self.fail(f"section {section_id} is not the RAM section ({self._ram_section})")
        pages = self._ram_data(setup=False)
        self._footer(section_id)
        self.stats.sections += 1
        self.stats.parts += kind == SECTION_PART
        if self.on_section:
            self.on_section(kind, pages)

    def _footer(self, section_id: int) -> None:
        r = self.r
        if (marker := r.u8()) != FOOTER:
            raise self.fail(f"expected a section footer, found {marker:#x}")
        if (found := r.be32()) != section_id:
            raise self.fail(f"footer of section {found}, expected {section_id}")

    def _ram_data(self, setup: bool) -> int:
        r = self.r
        stats = self.stats
        page_size = stats.page_size
        mask = page_size - 1
        pages = 0
        on_page = self.on_page
        while True:
            header = r.be64()
            flags = header & mask
            offset = header & ~mask
            if flags & ~KNOWN_FLAGS:
                unknown = flags & ~KNOWN_FLAGS
                name = next((n for bit, n in UNSUPPORTED.items() if unknown & bit), None)
                raise self.fail(
                    f"unsupported page flag {unknown:#x}"
                    + (f" ({name}: disable it)" if name else "")
                )
            if flags & FLAG_MEM_SIZE:
                if not setup:
                    raise self.fail("block list outside the setup section")
                self._block_list(offset)
                continue
            if flags & FLAG_EOS:
                return pages
            if flags & FLAG_MULTIFD_FLUSH and not flags & (FLAG_ZERO | FLAG_PAGE):
                continue
            if not flags & FLAG_CONTINUE:
                name = r.idstr()
                if name not in stats.blocks:
                    raise self.fail(f"unknown RAM block {name!r}")
                self._block = name
            elif self._block is None:
                raise self.fail("CONTINUE flag before any block")
            block = self._block
            if offset + page_size > stats.blocks[block]:
                raise self.fail(
                    f"page at {offset:#x} is beyond block {block!r} "
                    f"({stats.blocks[block]:#x} bytes)"
                )
            if flags & FLAG_ZERO:
                fill = r.u8()
                if fill != 0:
                    raise self.fail(f"zero page with fill byte {fill:#x}")
                data = None
                stats.zero_pages += 1
            elif flags & FLAG_PAGE:
                data = r.read(page_size)
            else:
                raise self.fail(f"page record without ZERO or PAGE flag ({flags:#x})")
            pages += 1
            stats.pages += 1
            stats.pages_by_block[block] = stats.pages_by_block.get(block, 0) + 1
            if on_page is not None:
                on_page(block, offset, data)

    def _block_list(self, total: int) -> None:
        r = self.r
        remaining = total
        while remaining > 0:
            name = r.idstr()
            length = r.be64()
            if length > remaining:
                raise self.fail(f"block {name!r} ({length} bytes) exceeds the announced RAM size")
            self.stats.blocks[name] = length
            remaining -= length
