"""Parsing the guest programs' console lines and comparing page hashes (pure logic)."""

from __future__ import annotations

import struct

import pytest

from testbed.scenarios.guestlog import (
    STAMP_MAGIC,
    decode_stamp,
    differing_pages,
    parse_dirtyram,
    parse_writeout,
)

CONSOLE = """\
guest# dirtyram 64 8 5 &
dirtyram: start pages=64 burst=8 period_ms=5 stride=8 page_size=4096 region=0xb6d00000
writeout: 1795712030 2026-11-26 16:53:50
dirtyram: bursts=101 written=808 checked=744 stale=0 passes=12 overruns=0
dirtyram: bursts=201 written=1608 checked=1544 stale=2 passes=25 overruns=1 stale_pages=3,7
writeout: 1795712031 2026-11-26 16:53:51
dirtyram: bursts=301 written=2408 checked=2344 stale=3 passes=37 overruns=1 stale_pages=9,+4
dirtyram: summary bursts=310 written=2480 checked=2416 stale=3 passes=38 overruns=1 result=FAIL
"""


def test_parse_dirtyram_statuses_and_summary() -> None:
    log = parse_dirtyram(CONSOLE)
    assert [s.passes for s in log.statuses] == [12, 25, 37]
    assert log.stale_pages == ["3", "7", "9", "+4"]
    assert log.summary is not None and log.summary.stale == 3 and log.summary.passes == 38
    assert log.last == log.summary


def test_parse_dirtyram_without_lines() -> None:
    log = parse_dirtyram("guest# ls\n")
    assert log.last is None and log.stale_pages == []


def test_parse_writeout() -> None:
    assert parse_writeout(CONSOLE) == [1795712030, 1795712031]


def test_decode_stamp() -> None:
    head = struct.pack("<4Q", STAMP_MAGIC, 1234, 99, 0)
    stamp = decode_stamp(head)
    assert stamp is not None and stamp.page == 1234 and stamp.burst == 99
    assert decode_stamp(b"\0" * 32) is None
    assert decode_stamp(b"short") is None


def test_differing_pages() -> None:
    a = bytes(range(8)) * 4
    b = bytearray(a)
    b[17] ^= 1  # page 2 of 4 (8-byte hashes)
    assert differing_pages(a, bytes(b), 8) == [2]
    assert differing_pages(a, a, 8) == []
    with pytest.raises(ValueError, match="differ in size"):
        differing_pages(a, a[:-8], 8)
