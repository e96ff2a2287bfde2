"""Guest RAM digests: one CRC-32 per page and one SHA-256 prefix per MiB
(testbed.node.ramdump.digest), page heads found in a kept dump, and the comparison of two
digests (testbed.scenarios.memory.differing)."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from testbed.errors import UserError
from testbed.node.ramdump import BLOCK, PAGE, KeptDump, digest
from testbed.protocol import RamDigest
from testbed.scenarios.memory import differing

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
    return KeptDump(data)


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


# -- differing() -------------------------------------------------------------------------------
def ram_digest(crcs: list[int], blocks: list[bytes]) -> RamDigest:
    """A RamDigest written by hand: CRC values per page, 8-byte prefixes per MiB."""
    assert all(len(b) == 8 for b in blocks)
    return RamDigest(
        pages=len(crcs),
        page_crc32=base64.b64encode(b"".join(c.to_bytes(4, "little") for c in crcs)).decode(),
        block_sha256=base64.b64encode(b"".join(blocks)).decode(),
        status="paused",
        seconds=0.1,
    )


BLOCKS = [bytes([b]) * 8 for b in range(3)]


def crcs_for(pages: int) -> list[int]:
    return [0x1000 + i for i in range(pages)]


def test_identical_digests_differ_nowhere() -> None:
    a = ram_digest(crcs_for(3 * PAGES_PER_BLOCK), BLOCKS)
    assert differing(a, a) == ([], [])


def test_differing_pages_are_listed() -> None:
    crcs = crcs_for(3 * PAGES_PER_BLOCK)
    other = list(crcs)
    for page in (0, 300, 767):
        other[page] ^= 1
    blocks_b = [b"\xdd" * 8, b"\xff" * 8, b"\xee" * 8]  # those MiBs differ too
    pages, blocks = differing(ram_digest(crcs, BLOCKS), ram_digest(other, blocks_b))
    assert pages == [0, 300, 767]
    assert blocks == []  # every differing MiB has a differing page


def test_a_block_that_differs_without_a_differing_page_is_reported() -> None:
    crcs = crcs_for(3 * PAGES_PER_BLOCK)
    other = list(crcs)
    other[10] ^= 1  # MiB 0: localized by a page
    # MiB 0 differs with page 10 in it, MiB 1 is equal, MiB 2 differs with no page CRC
    blocks_b = [b"\x01" * 8, BLOCKS[1], b"\x99" * 8]
    pages, blocks = differing(ram_digest(crcs, BLOCKS), ram_digest(other, blocks_b))
    assert pages == [10]
    assert blocks == [2]


def test_different_sizes_are_refused_in_one_line() -> None:
    a = ram_digest(crcs_for(PAGES_PER_BLOCK), BLOCKS[:1])
    b = ram_digest(crcs_for(2 * PAGES_PER_BLOCK), BLOCKS[:2])
    with pytest.raises(UserError) as caught:
        differing(a, b)
    assert str(caught.value) == (
        "the two guests' RAM differ in size (256 and 512 pages): compare VMs started with "
        "the same --mem"
    )
    assert "\n" not in str(caught.value)


def test_differing_on_real_digests() -> None:
    data = ram(2)
    crcs, blocks = digest(data)
    a = RamDigest(
        len(crcs) // 4,
        base64.b64encode(crcs).decode(),
        base64.b64encode(blocks).decode(),
        "paused",
        0.0,
    )
    data[400 * PAGE + 9] ^= 0x55
    crcs2, blocks2 = digest(data)
    b = RamDigest(
        len(crcs2) // 4,
        base64.b64encode(crcs2).decode(),
        base64.b64encode(blocks2).decode(),
        "paused",
        0.0,
    )
    assert differing(a, b) == ([400], [])
