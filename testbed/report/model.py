"""What a report shows, as data: one row per check of a single run, and one summary per
cell of a matrix (runs, failing, known defects, pages lost, first failure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from testbed.matrix.records import (
    SUITE_QEMU,
    Cell,
    FrontierPoint,
    JsonObject,
    MigrationTrace,
    RunRecord,
)

OUTCOMES = ("pass", "fail", "known-defect", "skipped")


@dataclass(frozen=True)
class CheckRow:
    """One check of one run: its name, what it looked at, its outcome and the evidence."""

    name: str  # e.g. ram-pages, load-stale, checkpoint, qemu-alive
    subject: str  # what was checked, e.g. "migration 1: gauss-a -> gauss-b"
    outcome: str  # pass | fail | known-defect | skipped
    summary: str  # the evidence in one line, e.g. "0 of 131072 pages differ"

    def to_json(self) -> JsonObject:
        return {
            "name": self.name,
            "subject": self.subject,
            "outcome": self.outcome,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class CellSummary:
    """The runs of one cell, counted."""

    cell: Cell
    qemu_versions: tuple[str, ...]
    runs: int
    failing: int  # verdict fail (no known defect explains it)
    known: int  # verdict known-defect
    known_defects: tuple[str, ...]  # the ids matched
    pages_lost_sum: int
    pages_lost_max: int
    first_failure: str  # of the first run (by run number) that did not pass
    records: tuple[RunRecord, ...] = field(repr=False, default=())

    @property
    def passing(self) -> int:
        return self.runs - self.failing - self.known

    def to_json(self) -> JsonObject:
        return {
            "key": self.cell.key,
            "cell": self.cell.to_json(),
            "qemu_versions": [v for v in self.qemu_versions],
            "runs": self.runs,
            "failing": self.failing,
            "known_defect": self.known,
            "known_defects": [d for d in self.known_defects],
            "passing": self.passing,
            "pages_lost_sum": self.pages_lost_sum,
            "pages_lost_max": self.pages_lost_max,
            "first_failure": self.first_failure,
        }


def summarize(records: Sequence[RunRecord]) -> list[CellSummary]:
    """One summary per cell, cells in a stable order (scenario, suite, arch, smp, load,
    accel, hold, link)."""
    by_cell: dict[Cell, list[RunRecord]] = {}
    for record in records:
        by_cell.setdefault(record.cell, []).append(record)
    summaries = []
    for cell in sorted(by_cell, key=lambda c: c.sort_key):
        runs = sorted(by_cell[cell], key=lambda r: r.run)
        not_passing = [r for r in runs if r.verdict != "pass"]
        summaries.append(
            CellSummary(
                cell=cell,
                qemu_versions=tuple(sorted({r.qemu_version for r in runs})),
                runs=len(runs),
                failing=sum(r.verdict == "fail" for r in runs),
                known=sum(r.verdict == "known-defect" for r in runs),
                known_defects=tuple(sorted({r.known_defect for r in runs if r.known_defect})),
                pages_lost_sum=sum(r.pages_lost for r in runs),
                pages_lost_max=max((r.pages_lost for r in runs), default=0),
                first_failure=not_passing[0].first_failure if not_passing else "",
                records=tuple(runs),
            )
        )
    return summaries


def dirty_rate_bps(trace: MigrationTrace) -> float | None:
    """The dirty rate the migration had to follow: the highest QEMU measured in a round
    (what the guest really dirtied), else the load's nominal rate."""
    measured = max((it.dirty_rate_pages_s for it in trace.iterations), default=0.0)
    if measured > 0:
        return measured * trace.page_size * 8
    return trace.load_dirty_rate_bps


def frontier_points(records: Sequence[RunRecord]) -> list[FrontierPoint]:
    """Every migration with a known dirty rate (measured by QEMU, or the load's nominal
    one), as a point of the frontier."""
    points = []
    for record in records:
        for trace in record.migrations:
            rate = dirty_rate_bps(trace)
            if rate is None or trace.load_dirty_rate_bps is None:
                continue  # only loads with a rate of their own sweep the frontier
            points.append(
                FrontierPoint(
                    link=record.cell.link,
                    link_bps=trace.link_bps,
                    dirty_rate_bps=rate,
                    converged=trace.converged,
                    arch=record.cell.arch,
                    qemu_version=record.qemu_version,
                )
            )
    return points


def qemu_text(summary: CellSummary) -> str:
    """``bookworm-backports (10.0.2)``; the suite's series when no run says its version."""
    versions = ", ".join(summary.qemu_versions) or SUITE_QEMU.get(summary.cell.suite, "?")
    return f"{summary.cell.suite} ({versions})"


def hold_text(cell: Cell) -> str:
    return "none" if cell.hold_s == 0 else f"{cell.hold_s:g} s"


def cell_label(cell: Cell) -> str:
    """A short one-line name for charts."""
    parts = [
        cell.scenario,
        SUITE_QEMU.get(cell.suite, cell.suite),
        cell.arch,
        f"smp{cell.smp}",
        cell.load,
        cell.accel,
    ]
    if cell.hold_s:
        parts.append(f"hold {cell.hold_s:g}s")
    if cell.bandwidth:
        parts.append(cell.bandwidth)
    return " ".join(parts)


@dataclass(frozen=True)
class FrontierLimit:
    """One link, one (arch, QEMU version): the highest dirty rate that converged and the
    lowest that did not (None where no migration did, or none failed to)."""

    link: str
    link_bps: int | None
    arch: str
    qemu_version: str
    highest_converged_bps: float | None
    lowest_not_converged_bps: float | None
    migrations: int


def frontier_limits(points: Sequence[FrontierPoint]) -> list[FrontierLimit]:
    """The frontier as a table: per (link, arch, QEMU version), links in the order
    100mbit, 1gbit, unshaped."""
    order = {"100mbit": 0, "1gbit": 1, "unshaped": 2}
    groups: dict[tuple[str, str, str], list[FrontierPoint]] = {}
    for p in points:
        groups.setdefault((p.link, p.arch, p.qemu_version), []).append(p)
    limits = []
    for (link, arch, version), mine in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0])
    ):
        ok = [p.dirty_rate_bps for p in mine if p.converged]
        not_ok = [p.dirty_rate_bps for p in mine if not p.converged]
        limits.append(
            FrontierLimit(
                link=link,
                link_bps=next((p.link_bps for p in mine if p.link_bps), None),
                arch=arch,
                qemu_version=version,
                highest_converged_bps=max(ok) if ok else None,
                lowest_not_converged_bps=min(not_ok) if not_ok else None,
                migrations=len(mine),
            )
        )
    return limits


def mbps_text(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1e6:.1f} Mbit/s"
