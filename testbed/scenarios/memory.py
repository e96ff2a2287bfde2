"""Guest RAM of two paused VMs compared page by page (the scenario's check, and
``testbed compare`` by hand)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from testbed import futures
from testbed.checks.migration import MemoryObservation, PageDiff, decode_stamp
from testbed.errors import UserError
from testbed.lab.lab import Lab
from testbed.loads import STAMP_MAGICS
from testbed.protocol import PageDigests, RamDigest, RamDrop, RamDump, RamPageDigest, RamPeek

PEEK_LIMIT = 32  # differing pages whose heads are decoded and reported
RAM_BASE = 0x40000000
PAGE = 4096
BLOCK = 1 << 20

# between the dumps of source and destination (negative controls alter the destination)
BetweenDumps = Callable[[], None]


def differing_blocks(a: RamDigest, b: RamDigest) -> list[int]:
    """The MiB blocks whose SHA-256 prefixes differ."""
    ba, bb = base64.b64decode(a.block_sha256), base64.b64decode(b.block_sha256)
    if len(ba) != len(bb) or a.pages != b.pages:
        raise UserError(
            f"the two guests' RAM differ in size ({a.pages} and {b.pages} pages)",
            "compare VMs started with the same --mem",
        )
    return [i // 8 for i in range(0, len(ba), 8) if ba[i : i + 8] != bb[i : i + 8]]


def differing_pages(
    blocks: list[int], a: PageDigests, b: PageDigests
) -> tuple[list[int], list[int]]:
    """Pages whose CRC-32 differs in those blocks, and the blocks where none does."""
    per_block = BLOCK // PAGE
    pages: list[int] = []
    unlocalized = []
    for block in blocks:
        ca = base64.b64decode(a.crc32[str(block)])
        cb = base64.b64decode(b.crc32[str(block)])
        found = [
            block * per_block + i // 4
            for i in range(0, len(ca), 4)
            if ca[i : i + 4] != cb[i : i + 4]
        ]
        if not found:
            unlocalized.append(block)
        pages += found
    return pages, unlocalized


def compare_ram(
    lab: Lab, src: str, dst: str, between: BetweenDumps | None = None
) -> MemoryObservation:
    """Dump both guests' RAM (in parallel, or one after the other around ``between``),
    list the differing pages with the load stamps they hold on each side."""
    if between is not None:
        a = lab.call(src, RamDump())
        between()
        b = lab.call(dst, RamDump())
    else:
        with ThreadPoolExecutor(2) as pool:
            fa = pool.submit(lab.call, src, RamDump())
            fb = pool.submit(lab.call, dst, RamDump())
            a, b = futures.result(fa), futures.result(fb)
    magics = {str(mode): value for mode, value in STAMP_MAGICS.items()}
    try:
        blocks = differing_blocks(a, b)
        pages: list[int] = []
        unlocalized: list[int] = []
        details = []
        if blocks:
            crc_a = lab.call(src, RamPageDigest(blocks))
            crc_b = lab.call(dst, RamPageDigest(blocks))
            pages, unlocalized = differing_pages(blocks, crc_a, crc_b)
        if pages:
            peek = pages[:PEEK_LIMIT]
            src_heads = lab.call(src, RamPeek(peek)).heads
            dst_heads = lab.call(dst, RamPeek(peek)).heads
            for n in peek:
                details.append(
                    PageDiff(
                        n,
                        hex(RAM_BASE + n * PAGE),
                        decode_stamp(bytes.fromhex(src_heads[str(n)]), magics),
                        decode_stamp(bytes.fromhex(dst_heads[str(n)]), magics),
                    )
                )
    finally:
        lab.call(src, RamDrop())
        lab.call(dst, RamDrop())
    return MemoryObservation(a.pages, pages, unlocalized, details, [a.seconds, b.seconds])
