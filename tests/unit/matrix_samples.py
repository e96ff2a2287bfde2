"""Synthetic matrix records for the report tests (unit and browser): plausible numbers,
nothing measured."""

from __future__ import annotations

from testbed.matrix.records import Cell, FrontierPoint, IterationSample, MigrationTrace, RunRecord
from testbed.report.model import CheckRow

HOT_7_2 = Cell("migration", "bookworm", "armv7", 2, "hot:256", "tcg", 5.0, "100mbit")
HOT_10_0 = Cell("migration", "bookworm-backports", "armv7", 2, "hot:256", "tcg", 5.0, "100mbit")
SHMEM = Cell("shmem", "bookworm", "armv8", 1, "dirty", "tcg")
# Text that must come out escaped wherever it is shown.
NASTY_FAILURE = "ram-pages: <b>3082</b> pages differ | first at 0x4000_0000 & *stale*"


def trace(index: int = 1, converged: bool = True, passes: int = 8) -> MigrationTrace:
    samples = [
        IterationSample(
            t_ms=100.0 * n,
            pass_no=n,
            transferred_bytes=n * 12_000_000,
            remaining_bytes=max(0, 512 * 2**20 - n * 70 * 2**20),
            dirty_rate_pages_s=2000.0 + 150 * n,
            mbps=95.0 + n,
        )
        for n in range(1, passes + 1)
    ]
    return MigrationTrace(
        index=index,
        total_ms=100.0 * passes + 40,
        downtime_ms=40.0,
        converged=converged,
        dirty_sync_count=passes,
        link_bps=100_000_000,
        load_dirty_rate_bps=60_000_000.0,
        iterations=samples,
    )


def record(
    cell: Cell = HOT_7_2,
    run: int = 1,
    verdict: str = "pass",
    pages_lost: int = 0,
    known_defect: str | None = None,
    qemu_version: str = "7.2.22",
    first_failure: str = "",
    checks_failed: tuple[str, ...] = (),
) -> RunRecord:
    return RunRecord(
        cell=cell,
        run=run,
        qemu_version=qemu_version,
        verdict=verdict,
        known_defect=known_defect,
        pages_lost=pages_lost,
        checks_failed=list(checks_failed),
        first_failure=first_failure,
        wall_seconds=41.5,
        started_at="2026-05-04T10:00:00+00:00",
        migrations=[] if cell.scenario == "shmem" else [trace(converged=verdict == "pass")],
    )


def matrix() -> list[RunRecord]:
    """Three cells: 7.2 hot (2 known defect, 1 fail, 1 pass), 10.0 hot (all pass), shmem
    (1 known defect, 1 pass)."""
    known = "tcg-armv7-smp-hot-ram-loss-7.2"
    return [
        record(HOT_7_2, 1, "known-defect", 256, known, first_failure="ram-pages: 256 differ",
               checks_failed=("ram-pages", "load-stale")),
        record(HOT_7_2, 2, "fail", 3082, first_failure=NASTY_FAILURE,
               checks_failed=("ram-pages", "network")),
        record(HOT_7_2, 3, "known-defect", 200, known, first_failure="ram-pages: 200 differ",
               checks_failed=("ram-pages",)),
        record(HOT_7_2, 4, "pass"),
        record(HOT_10_0, 1, "pass", qemu_version="10.0.2"),
        record(HOT_10_0, 2, "pass", qemu_version="10.0.2"),
        record(SHMEM, 1, "known-defect", 12, "tcg-dirty-sync-fastpath",
               first_failure="checkpoint 3: 12 pages differ", checks_failed=("checkpoint",)),
        record(SHMEM, 2, "pass"),
    ]  # fmt: skip


def frontier() -> list[FrontierPoint]:
    points = []
    for link, bps in (("100mbit", 100_000_000), ("1gbit", 1_000_000_000), ("unshaped", None)):
        top = bps or 2_500_000_000
        for fraction, converged in ((0.3, True), (0.6, True), (1.2, False)):
            for arch, version in (("armv7", "7.2.22"), ("armv8", "10.0.2")):
                points.append(FrontierPoint(link, bps, top * fraction, converged, arch, version))
    return points


def checks() -> list[CheckRow]:
    return [
        CheckRow("ram-pages", "migration 1: gauss-a -> gauss-b", "fail", NASTY_FAILURE),
        CheckRow("load-stale", "dirtyram on the destination", "pass", "stale=0 after 2 passes"),
        CheckRow("qemu-alive", "source and destination QEMU", "pass", "both exited 0"),
    ]
