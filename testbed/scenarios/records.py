"""Scenario results as matrix records and report pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from testbed import codec
from testbed.matrix.records import Cell, RunRecord
from testbed.report.model import CheckRow
from testbed.report.writer import write_report
from testbed.scenarios.migration import MigrationResult
from testbed.scenarios.shmem import ShmemResult

Result = MigrationResult | ShmemResult


def cell_of(result: Result) -> Cell:
    if isinstance(result, MigrationResult):
        p = result.params
        return Cell(
            scenario="migration",
            suite=p.suite,
            arch=p.arch,
            smp=p.smp,
            load="+".join(result.loads),
            accel=result.accel or p.accel,
            hold_s=p.hold,
            bandwidth=p.bandwidth,
        )
    q = result.params
    return Cell(
        scenario="shmem",
        suite=q.suite,
        arch=q.arch,
        smp=1,
        load=q.workload,
        accel=result.accel or q.accel,
    )


def pages_lost(result: Result) -> int:
    if isinstance(result, ShmemResult):
        return result.pages_lost
    lost: set[int] = set()
    stale = 0
    for hop in result.migrations:
        if hop.memory is not None:
            lost.update(hop.memory.differing_pages)
        stale += sum(max(0, load.stale_after - load.stale_before) for load in hop.loads)
    return max(len(lost), stale)


def record_of(
    result: Result, run: int = 1, started_at: datetime | None = None, cell: Cell | None = None
) -> RunRecord:
    """The run as a matrix record (of ``cell`` as the matrix asked for it, e.g. accel
    auto, or else of the cell the run was)."""
    failed = sorted({c.check for c in result.checks if c.failed})
    return RunRecord(
        cell=cell or cell_of(result),
        run=run,
        qemu_version=result.qemu_version or "?",
        verdict=result.verdict.value,
        known_defect=result.known_defect.id if result.known_defect else None,
        pages_lost=pages_lost(result),
        checks_failed=failed,
        first_failure=result.first_failure,
        wall_seconds=result.wall_seconds,
        started_at=(started_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        migrations=result.traces() if isinstance(result, MigrationResult) else [],
    )


def check_rows(result: Result) -> list[CheckRow]:
    return [CheckRow(c.check, c.subject, c.outcome.value, c.summary) for c in result.checks]


def name_of(result: Result) -> str:
    return f"{result.scenario}-{result.arch}"


def write_run_report(directory: str | Path, result: Result, artifacts: dict[str, str]) -> Path:
    """``DIR/NAME/`` with the page of this run (index.html, summary.md, results.json), the
    full result as ``NAME.json`` and every artifact (consoles, QEMU and daemon logs)."""
    name = name_of(result)
    out = Path(directory) / name
    write_report(
        out,
        [record_of(result)],
        checks=check_rows(result),
        title=f"gauss-testbed: {result.scenario} {result.arch} (QEMU "
        f"{result.qemu_version}, {result.accel})",
    )
    (out / f"{name}.json").write_text(json.dumps(codec.to_json(result), indent=2) + "\n")
    for filename, text in artifacts.items():
        (out / filename).write_text(text)
    return out


def check_report_dir(directory: str) -> None:
    """Refuse, before anything runs, a report directory that cannot be written."""
    from testbed.errors import UserError

    path = Path(directory)
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(
            f"--report {directory}: {probe} is not a directory",
            "give a directory that can be created and written",
        )
    import os

    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(
            f"--report {directory}: {probe} is not writable", "give a directory you can write"
        )
