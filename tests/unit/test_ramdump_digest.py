"""Guest RAM digests: one CRC-32 per page and one SHA-256 prefix per MiB
(testbed.node.ramdump.digest), page heads found in a kept dump, and the comparison of two
digests (testbed.scenarios.memory.differing)."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import zlib
from pathlib import Path

import pytest

from testbed.errors import UserError
from testbed.node.ramdump import (
    BLOCK,
    PAGE,
    RAM_BASE,
    KeptDump,
    Segment,
    block_digests,
    digest,
    page_crcs,
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
    return KeptDump(Path(name), len(data), segments)


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
