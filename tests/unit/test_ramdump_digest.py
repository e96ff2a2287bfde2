"""Guest RAM digests: one CRC-32 per page and one SHA-256 prefix per MiB
(testbed.node.ramdump.digest), page heads found in a kept dump, and the comparison of two
digests (testbed.scenarios.memory.differing)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from testbed.errors import UserError
from testbed.node.ramdump import (
    BLOCK,
    PAGE,
    RAM_BASE,
    DumpLayoutError,
    KeptDump,
    Segment,
    block_digests,
    digest,
    page_crcs,
    stream_block_digests,
)
from testbed.protocol import PageDigests, RamDigest
from testbed.scenarios.memory import differing_blocks, differing_pages

PAGES_PER_BLOCK = BLOCK // PAGE


def ram(mib: int) -> bytearray:
    """Distinct content per page (so that equal CRCs are not a coincidence)."""
    data = bytearray(mib * BLOCK)
    for page in range(len(data) // PAGE):
        data[page * PAGE : page * PAGE + 8] = page.to_bytes(8, "little")
    return data


# -- digest() ----------------------------------------------------------------------------------
def test_digest_sizes_and_values() -> None:
    data = ram(2)
    crcs, blocks = digest(data)
    assert len(crcs) == 4 * 512  # one u32 per page
    assert len(blocks) == 8 * 2  # one 8-byte prefix per MiB
    for page in (0, 1, 255, 256, 511):
        expected = zlib.crc32(data[page * PAGE : (page + 1) * PAGE])
        assert int.from_bytes(crcs[4 * page : 4 * page + 4], "little") == expected
    for block in (0, 1):
        expected_prefix = hashlib.sha256(data[block * BLOCK : (block + 1) * BLOCK]).digest()[:8]
        assert blocks[8 * block : 8 * block + 8] == expected_prefix


def test_digest_of_bytes_and_bytearray_agree() -> None:
    data = ram(1)
    assert digest(bytes(data)) == digest(data)


def test_one_changed_byte_changes_its_page_and_its_block_only() -> None:
    data = ram(2)
    crcs, blocks = digest(data)
    data[300 * PAGE + 1234] ^= 0xFF  # page 300, in MiB 1
    crcs2, blocks2 = digest(data)
    changed_pages = [i // 4 for i in range(0, len(crcs), 4) if crcs[i : i + 4] != crcs2[i : i + 4]]
    assert changed_pages == [300]
    assert blocks[:8] == blocks2[:8] and blocks[8:] != blocks2[8:]


def test_digest_of_nothing() -> None:
    assert digest(b"") == (b"", b"")


# -- KeptDump.find_heads -----------------------------------------------------------------------
HEAD = bytes.fromhex("4d49525459524d31")  # "MIRTYRM1"


def dump_with(aligned: list[int], unaligned: list[int], pages: int = 16) -> KeptDump:
    data = bytearray(pages * PAGE)
    for page in aligned:
        data[page * PAGE : page * PAGE + len(HEAD)] = HEAD
    for offset in unaligned:
        data[offset : offset + len(HEAD)] = HEAD
    return kept_of(data)


MADE: list[KeptDump] = []


@pytest.fixture(autouse=True)
def _close_made_dumps() -> Any:
    """Every dump file a test made goes with the test, whatever it asserted."""
    yield
    while MADE:
        MADE.pop().close()


def kept_of(data: bytearray) -> KeptDump:
    """A dump file as QEMU writes one: a header, then guest RAM as one segment, here split
    in two segments out of order, to exercise the mapping."""
    fd, name = tempfile.mkstemp(prefix="testbed-dump-")
    half = len(data) // 2
    header = b"\0" * 64
    os.write(fd, header + bytes(data[half:]) + bytes(data[:half]))
    os.close(fd)
    segments = [
        Segment(64 + len(data) - half, RAM_BASE, half),
        Segment(64, RAM_BASE + half, len(data) - half),
    ]
    kept = KeptDump(Path(name), len(data), segments)
    MADE.append(kept)
    return kept


def test_kept_dump_reads_across_segments_and_its_file_goes_with_it() -> None:
    data = ram(1)
    kept = kept_of(data)
    middle = len(data) // 2
    assert kept.read(middle - 10, 20) == bytes(data[middle - 10 : middle + 10])
    assert b"".join(kept.blocks()) == bytes(data)
    assert page_crcs(kept, 0) == page_crcs(data, 0)
    kept.close()
    assert not kept.path.exists()


def test_find_heads_finds_only_page_aligned_matches() -> None:
    kept = dump_with([2, 5, 15], [PAGE + 8, 3 * PAGE + 100, 5 * PAGE + 16, 14 * PAGE + 4000])
    assert kept.find_heads(HEAD, 16) == [2, 5, 15]


def test_find_heads_respects_the_limit() -> None:
    kept = dump_with([1, 3, 4, 9, 12], [])
    assert kept.find_heads(HEAD, 2) == [1, 3]
    assert kept.find_heads(HEAD, 5) == [1, 3, 4, 9, 12]
    assert kept.find_heads(HEAD, 0) == []


def test_find_heads_with_unaligned_matches_only() -> None:
    kept = dump_with([], [7, PAGE + 1, 2 * PAGE - 8])
    assert kept.find_heads(HEAD, 16) == []


def test_find_heads_after_an_unaligned_match_in_the_same_page() -> None:
    # an unaligned match in page 3, then an aligned one right at page 4's start
    kept = dump_with([4], [3 * PAGE + 4088])
    assert kept.find_heads(HEAD, 16) == [4]


def test_head_reads_the_start_of_a_page() -> None:
    kept = dump_with([6], [])
    assert kept.head(6, 8) == HEAD
    assert kept.head(6, 4) == HEAD[:4]
    assert kept.head(7, 8) == b"\0" * 8


# -- the two-level comparison: MiB blocks, then pages ---------------------------------------------
def ram_digest(data: bytearray) -> RamDigest:
    blocks = block_digests(data)
    return RamDigest(len(data) // PAGE, base64.b64encode(blocks).decode(), "paused", 0.0)


def page_digests(data: bytearray, blocks: list[int]) -> PageDigests:
    return PageDigests({str(b): base64.b64encode(page_crcs(data, b)).decode() for b in blocks})


def compare(a: bytearray, b: bytearray) -> tuple[list[int], list[int]]:
    """What the host does with the agents' answers (testbed.scenarios.memory)."""
    blocks = differing_blocks(ram_digest(a), ram_digest(b))
    return differing_pages(blocks, page_digests(a, blocks), page_digests(b, blocks))


def test_identical_ram_differs_nowhere() -> None:
    data = ram(3)
    assert differing_blocks(ram_digest(data), ram_digest(bytearray(data))) == []
    assert compare(data, bytearray(data)) == ([], [])


def test_differing_pages_are_listed_with_only_their_blocks_asked_for() -> None:
    a = ram(3)
    b = bytearray(a)
    for page in (0, 300, 767):
        b[page * PAGE + 17] ^= 0x5A
    assert differing_blocks(ram_digest(a), ram_digest(b)) == [0, 1, 2]
    assert compare(a, b) == ([0, 300, 767], [])
    c = bytearray(a)
    c[600 * PAGE] ^= 1
    assert differing_blocks(ram_digest(a), ram_digest(c)) == [2]


def test_a_block_that_differs_without_a_differing_page_is_reported() -> None:
    crcs = base64.b64encode(b"\x01\x00\x00\x00" * PAGES_PER_BLOCK).decode()
    same = PageDigests({"2": crcs})
    assert differing_pages([2], same, same) == ([], [2])


def test_different_sizes_are_refused_in_one_line() -> None:
    with pytest.raises(UserError) as caught:
        differing_blocks(ram_digest(ram(1)), ram_digest(ram(2)))
    assert str(caught.value) == (
        "the two guests' RAM differ in size (256 and 512 pages): compare VMs started with "
        "the same --mem"
    )
    assert "\n" not in str(caught.value)


def test_page_crcs_are_the_digest_of_that_block() -> None:
    data = ram(2)
    crcs, _ = digest(data)
    assert page_crcs(data, 1) == crcs[PAGES_PER_BLOCK * 4 :]


# -- stream_block_digests: the dump hashed as it comes out of QEMU's FIFO ------------------------
PT_NOTE = 4


def elf_dump(
    pieces: list[tuple[int, bytes]], bits: int = 64, notes: bytes = b"NOTE" * 100, gap: int = 0
) -> bytes:
    """An ELF core as ``dump-guest-memory`` writes one: the ELF header, the program
    headers (a PT_NOTE, then one PT_LOAD per (guest-physical address, bytes) piece), the
    notes, then the pieces in the order given (``gap`` bytes of 0xee between them, in no
    segment)."""
    if bits == 64:
        ehsize, phentsize, phdr = 64, 56, "<IIQQQQQQ"
    else:
        ehsize, phentsize, phdr = 52, 32, "<IIIIIIII"
    phnum = 1 + len(pieces)
    offset = ehsize + phnum * phentsize
    headers = []
    if bits == 64:
        headers.append(struct.pack(phdr, PT_NOTE, 0, offset, 0, 0, len(notes), len(notes), 0))
    else:
        headers.append(struct.pack(phdr, PT_NOTE, offset, 0, 0, len(notes), len(notes), 0, 0))
    offset += len(notes)
    for number, (paddr, data) in enumerate(pieces):
        offset += gap if number else 0
        if bits == 64:
            headers.append(struct.pack(phdr, 1, 0, offset, paddr, paddr, len(data), len(data), 0))
        else:
            headers.append(struct.pack(phdr, 1, offset, paddr, paddr, len(data), len(data), 0, 0))
        offset += len(data)
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1, 1]) + b"\0" * 9
    if bits == 64:
        header = ident + struct.pack(
            "<HHIQQQIHHHHHH", 4, 183, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 0, 0, 0
        )
    else:
        header = ident + struct.pack(
            "<HHIIIIIHHHHHH", 4, 40, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 0, 0, 0
        )
    assert len(header) == ehsize
    between = b"\xee" * gap
    return header + b"".join(headers) + notes + between.join(data for _, data in pieces)


class Trickle(io.RawIOBase):
    """A pipe's reads: never more than ``chunk`` bytes at once."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.at, self.chunk = data, 0, chunk

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.chunk, len(self.data) - self.at)
        buffer[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n


def streamed(dump: bytes, size: int, chunk: int = 65536) -> bytes:
    return stream_block_digests(Trickle(dump, chunk), size)


@pytest.mark.parametrize("bits", [64, 32])
def test_streamed_digests_equal_those_of_the_ram(bits: int) -> None:
    data = ram(3)
    dump = elf_dump([(RAM_BASE, bytes(data))], bits)
    assert streamed(dump, len(data)) == block_digests(data)
    assert streamed(dump, len(data), chunk=4093) == block_digests(data)


def test_streamed_ram_in_two_segments_split_inside_a_block() -> None:
    data = ram(3)
    cut = BLOCK + 5 * PAGE
    dump = elf_dump([(RAM_BASE, bytes(data[:cut])), (RAM_BASE + cut, bytes(data[cut:]))])
    assert streamed(dump, len(data)) == block_digests(data)


def test_streamed_segments_that_are_not_ram_are_skipped() -> None:
    data = ram(2)
    flash = b"\xff" * (3 * PAGE)
    dump = elf_dump([(0, flash), (RAM_BASE, bytes(data)), (RAM_BASE + len(data), flash)])
    assert streamed(dump, len(data)) == block_digests(data)


def test_one_changed_byte_changes_the_streamed_digest_of_its_block_only() -> None:
    data = ram(3)
    before = streamed(elf_dump([(RAM_BASE, bytes(data))]), len(data))
    data[2 * BLOCK + 77] ^= 1
    after = streamed(elf_dump([(RAM_BASE, bytes(data))]), len(data))
    assert before[:16] == after[:16] and before[16:] != after[16:]


def test_ram_out_of_order_is_a_layout_error_for_the_file_dump_to_handle() -> None:
    data = ram(2)
    half = len(data) // 2
    dump = elf_dump([(RAM_BASE + half, bytes(data[half:])), (RAM_BASE, bytes(data[:half]))])
    with pytest.raises(DumpLayoutError):
        streamed(dump, len(data))


def test_a_dump_that_ends_early_is_an_error_not_a_digest() -> None:
    data = ram(2)
    dump = elf_dump([(RAM_BASE, bytes(data))])
    with pytest.raises(ValueError, match="ended at guest RAM offset 0x180000"):
        streamed(dump[: len(dump) - BLOCK // 2], len(data))
    with pytest.raises(ValueError, match="not an ELF file"):
        streamed(b"", len(data))


def test_a_dump_that_covers_less_than_the_ram_is_refused() -> None:
    data = ram(2)
    with pytest.raises(RuntimeError, match="covers 1048576 of the 2097152 bytes"):
        streamed(elf_dump([(RAM_BASE, bytes(data[:BLOCK]))]), len(data))


def test_bytes_between_segments_never_enter_a_block_half_read() -> None:
    # RAM in two segments split inside MiB 1, with bytes between them in the file
    data = ram(2)
    cut = BLOCK + BLOCK // 2
    pieces = [(RAM_BASE, bytes(data[:cut])), (RAM_BASE + cut, bytes(data[cut:]))]
    for gap in (PAGE, 3 * BLOCK // 2):
        assert streamed(elf_dump(pieces, gap=gap), len(data)) == block_digests(data)
