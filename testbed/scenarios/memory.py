"""Guest RAM of two paused VMs compared page by page (the scenario's check, and
``testbed compare`` by hand)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from testbed.checks.migration import MemoryObservation, PageDiff, decode_stamp
from testbed.errors import UserError
from testbed.lab.lab import Lab
from testbed.loads import STAMP_MAGICS
from testbed.protocol import RamDigest, RamDrop, RamDump, RamPeek

PEEK_LIMIT = 32  # differing pages whose heads are decoded and reported
RAM_BASE = 0x40000000
PAGE = 4096

# between the dumps of source and destination (negative controls alter the destination)
BetweenDumps = Callable[[], None]


def differing(a: RamDigest, b: RamDigest) -> tuple[list[int], list[int]]:
    """Pages whose CRC-32 differs, and MiB blocks whose SHA-256 differs with no such page."""
    ca, cb = base64.b64decode(a.page_crc32), base64.b64decode(b.page_crc32)
    if len(ca) != len(cb):
        raise UserError(
            f"the two guests' RAM differ in size ({len(ca) // 4} and {len(cb) // 4} pages)",
            "compare VMs started with the same --mem",
        )
    pages = [i // 4 for i in range(0, len(ca), 4) if ca[i : i + 4] != cb[i : i + 4]]
    ba, bb = base64.b64decode(a.block_sha256), base64.b64decode(b.block_sha256)
    per_block = (1 << 20) // PAGE
    page_blocks = {p // per_block for p in pages}
    blocks = [
        i // 8
        for i in range(0, len(ba), 8)
        if ba[i : i + 8] != bb[i : i + 8] and i // 8 not in page_blocks
    ]
    return pages, blocks


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
            a, b = fa.result(), fb.result()
    magics = {str(mode): value for mode, value in STAMP_MAGICS.items()}
    try:
        pages, blocks = differing(a, b)
        details = []
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
    return MemoryObservation(a.pages, pages, blocks, details, [a.seconds, b.seconds])
