"""Parsing what the guest programs print on the console (pure logic, unit-tested)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

_DIRTYRAM = re.compile(
    r"dirtyram: bursts=(\d+) written=(\d+) checked=(\d+) stale=(\d+) passes=(\d+) "
    r"overruns=(\d+)(?: stale_pages=([\d,+]+))?"
)
_SUMMARY = re.compile(
    r"dirtyram: summary bursts=(\d+) written=(\d+) checked=(\d+) stale=(\d+) passes=(\d+) "
    r"overruns=(\d+) result=(PASS|FAIL)"
)
_WRITEOUT = re.compile(r"writeout: (\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")

STAMP_MAGIC = 0x314D52595452494D  # dirtyram.c STAMP_MAGIC


@dataclass(frozen=True)
class DirtyramStatus:
    bursts: int
    written: int
    checked: int
    stale: int
    passes: int
    overruns: int
    stale_pages: tuple[str, ...] = ()


@dataclass
class DirtyramLog:
    statuses: list[DirtyramStatus] = field(default_factory=list)
    summary: DirtyramStatus | None = None

    @property
    def last(self) -> DirtyramStatus | None:
        return self.summary or (self.statuses[-1] if self.statuses else None)

    @property
    def stale_pages(self) -> list[str]:
        return [p for s in self.statuses for p in s.stale_pages]


def parse_dirtyram(text: str) -> DirtyramLog:
    log = DirtyramLog()
    for line in text.splitlines():
        if m := _SUMMARY.search(line):
            log.summary = DirtyramStatus(*(int(g) for g in m.groups()[:6]))
        elif m := _DIRTYRAM.search(line):
            pages = tuple(m.group(7).split(",")) if m.group(7) else ()
            log.statuses.append(DirtyramStatus(*(int(g) for g in m.groups()[:6]), pages))
    return log


def parse_writeout(text: str) -> list[int]:
    """The guest's epoch seconds of every writeout line."""
    return [int(m.group(1)) for m in _WRITEOUT.finditer(text)]


@dataclass(frozen=True)
class PageStamp:
    """The dirtyram stamp at the start of a page, if the page holds one."""

    page: int
    burst: int


def decode_stamp(head: bytes, little_endian: bool = True) -> PageStamp | None:
    if len(head) < 32:
        return None
    fmt = "<4Q" if little_endian else ">4Q"
    magic, page, burst, _check = struct.unpack(fmt, head[:32])
    return PageStamp(page, burst) if magic == STAMP_MAGIC else None


def differing_pages(a: bytes, b: bytes, hash_bytes: int) -> list[int]:
    """Page numbers whose hashes differ between two equally long digest strings."""
    if len(a) != len(b):
        raise ValueError(
            f"the two RAM dumps differ in size ({len(a)} and {len(b)} bytes of hashes)"
        )
    return [
        i // hash_bytes
        for i in range(0, len(a), hash_bytes)
        if a[i : i + hash_bytes] != b[i : i + hash_bytes]
    ]
