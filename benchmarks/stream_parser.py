"""Throughput of the migration-stream parser on the recorded real streams.

    python benchmarks/stream_parser.py [--seconds 3]

Parses each fixture repeatedly (with a page callback, as the daemon does) and prints
pages/s and MB/s."""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

from testbed.node.stream import MigrationStreamParser

STREAMS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "streams"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    delivered = [0]

    def on_page(block: str, offset: int, page: bytes | None) -> None:
        delivered[0] += 1

    for path in sorted(STREAMS.glob("*.bin")):
        data = path.read_bytes()

        pages = size = 0
        started = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            stats = MigrationStreamParser(io.BufferedReader(io.BytesIO(data)), on_page).parse()
            pages += stats.pages
            size += stats.bytes_read
        elapsed = time.perf_counter() - started
        print(f"{path.name}: {pages / elapsed:,.0f} pages/s, {size / elapsed / 1e6:.1f} MB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
