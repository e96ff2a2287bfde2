"""The migration-stream parser on real recorded streams (QEMU 7.2.22 and 10.0.2) and on
malformed ones: a clear error, never a silent partial success."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from testbed.node.recorder import RAM_MB, SHM_SIZE, pattern
from testbed.node.stream import MigrationStreamParser, StreamError

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"
RECORDED = {
    "7.2.22": STREAMS / "qemu-7.2.22-armv8.bin",
    "10.0.2": STREAMS / "qemu-10.0.2-armv8.bin",
}
SHM_BLOCK = "0000:00:01.0/shm"


def parse(data: bytes, pages: dict[tuple[str, int], bytes | None] | None = None):
    def on_page(block: str, offset: int, page: bytes | None) -> None:
        if pages is not None:
            pages[(block, offset)] = page

    return MigrationStreamParser(io.BufferedReader(io.BytesIO(data)), on_page).parse()


@pytest.mark.parametrize("version", sorted(RECORDED))
def test_recorded_stream_yields_the_shared_memory_pattern(version: str) -> None:
    pages: dict[tuple[str, int], bytes | None] = {}
    stats = parse(RECORDED[version].read_bytes(), pages)
    assert stats.completed and stats.page_size == 4096
    assert stats.machine == f"virt-{version.rsplit('.', 1)[0]}"
    assert stats.blocks[SHM_BLOCK] == SHM_SIZE
    assert stats.blocks["mach-virt.ram"] == RAM_MB << 20
    expected = pattern()
    shm = bytearray(SHM_SIZE)
    for (block, offset), page in pages.items():
        if block == SHM_BLOCK:
            assert page is not None  # the pattern has no zero page
            shm[offset : offset + 4096] = page
    assert bytes(shm) == expected
    assert stats.pages_by_block[SHM_BLOCK] == SHM_SIZE // 4096
    # main RAM of a guest that never ran: zero pages, but for what QEMU loaded into it
    # (the device tree, magic d00dfeed)
    ram = [p for (b, _), p in pages.items() if b == "mach-virt.ram"]
    assert len(ram) == (RAM_MB << 20) // 4096
    assert sum(p is None for p in ram) > len(ram) - 16
    assert any(p is not None and p[:4] == bytes.fromhex("d00dfeed") for p in ram)
    assert stats.commands == (1 if version.startswith("10.") else 0)


@pytest.mark.parametrize("version", sorted(RECORDED))
def test_truncated_stream_is_an_error_at_every_cut(version: str) -> None:
    data = RECORDED[version].read_bytes()
    end_of_ram = parse(data).bytes_read  # after the RAM section the rest is drained
    for cut in (3, 9, 40, 200, 5000, len(data) // 3, len(data) // 2):
        if cut >= end_of_ram:
            continue
        with pytest.raises(StreamError, match="truncated"):
            parse(data[:cut])


def test_wrong_magic() -> None:
    data = bytearray(RECORDED["7.2.22"].read_bytes())
    data[0:4] = b"QEMU"
    with pytest.raises(StreamError, match="byte 0: wrong magic 0x51454d55"):
        parse(bytes(data))


# -- synthetic streams: one defect each ------------------------------------------------------
def be32(n: int) -> bytes:
    return struct.pack(">I", n)


def be64(n: int) -> bytes:
    return struct.pack(">Q", n)


def idstr(name: str) -> bytes:
    return bytes([len(name)]) + name.encode()


def stream(records: bytes, *, footer: int = 1, section_name: str = "ram") -> bytes:
    header = be32(0x5145564D) + be32(3)
    config = (
        b"\x07"
        + be32(4)
        + b"virt"
        + b"\x05"
        + idstr("configuration/target-page-bits")
        + be32(1)
        + be32(12)
    )
    setup = (
        b"\x01"
        + be32(1)
        + idstr(section_name)
        + be32(0)
        + be32(4)
        + be64(8192 | 0x04)
        + idstr("blk/shm")
        + be64(8192)
        + be64(0x10)
        + b"\x7e"
        + be32(1)
    )
    part = b"\x03" + be32(1) + records + be64(0x10) + b"\x7e" + be32(footer)
    return header + config + setup + part + b"\x04device state, not parsed\x00"


def page_record(offset: int, flags: int, name: str | None = "blk/shm") -> bytes:
    rec = be64(offset | flags)
    if name is not None:
        rec += idstr(name)
    return rec


def test_synthetic_stream_is_read() -> None:
    pages: dict[tuple[str, int], bytes | None] = {}
    records = page_record(0, 0x08) + b"\x11" * 4096 + page_record(4096, 0x02 | 0x20, None) + b"\x00"
    stats = parse(stream(records), pages)
    assert stats.completed and pages == {("blk/shm", 0): b"\x11" * 4096, ("blk/shm", 4096): None}


@pytest.mark.parametrize(
    ("records", "kwargs", "message"),
    [
        (
            page_record(0, 0x40) + b"\x00" * 8,
            {},
            r"unsupported page flag 0x40 \(xbzrle: disable it\)",
        ),
        (page_record(0, 0x800), {}, "unsupported page flag 0x800"),
        (
            page_record(0, 0x08, "other/block") + b"\x00" * 4096,
            {},
            "unknown RAM block 'other/block'",
        ),
        (page_record(8192, 0x08) + b"\x00" * 4096, {}, "page at 0x2000 is beyond block 'blk/shm'"),
        (page_record(0, 0x08 | 0x20, None), {}, "CONTINUE flag before any block"),
        (page_record(0, 0x02) + b"\x07", {}, "zero page with fill byte 0x7"),
        (b"", {"footer": 9}, "footer of section 9, expected 1"),
        (b"", {"section_name": "block"}, "unsupported iterative section 'block'"),
    ],
)
def test_malformed_stream_names_the_problem(records: bytes, kwargs: dict, message: str) -> None:
    with pytest.raises(StreamError, match=message) as info:
        parse(stream(records, **kwargs))
    assert str(info.value).startswith("migration stream, byte ")


def test_stream_ending_before_the_ram_section_completes() -> None:
    data = stream(b"")
    cut = data.index(b"\x03" + be32(1))  # drop the END section: device state follows
    with pytest.raises(StreamError, match="before the RAM section was complete"):
        parse(data[:cut] + b"\x04rest")
