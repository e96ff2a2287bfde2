"""Runs a matrix: every (cell, run) pair of this shard that the results file does not hold
yet, one after the other, each record appended (and fsync'd) as soon as it exists.

Ctrl-C stops after the records written so far; the same command resumes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from testbed.matrix.cells import Shard, pairs
from testbed.matrix.records import Cell, RunRecord
from testbed.matrix.store import ResultStore

LOG = logging.getLogger(__name__)

RunCell = Callable[[Cell, int], RunRecord]
MIGRATION_TIMEOUT = 60.0  # seconds a matrix migration may take to converge


def run_cell(cell: Cell, run: int, lab: str) -> RunRecord:
    """One run of one cell in the lab ``lab``: observe, judge, match known defects."""
    from datetime import UTC, datetime

    from testbed import docker_client
    from testbed.scenarios.migration import MigrationParams, MigrationScenario
    from testbed.scenarios.records import record_of
    from testbed.scenarios.shmem import ShmemParams, ShmemScenario

    client = docker_client.connect()
    started = datetime.now(UTC)
    if cell.scenario == "migration":
        params = MigrationParams(
            arch=cell.arch,
            loads=tuple(cell.load.split("+")),
            smp=cell.smp,
            accel=cell.accel,
            suite=cell.suite,
            lab=lab,
            hold=cell.hold_s,
            bandwidth=cell.bandwidth,
            # a migration that has not converged by then is reported as not converging
            migration_timeout=MIGRATION_TIMEOUT,
        )
        result = MigrationScenario(client, params).run()
        return record_of(result, run, started, cell)
    shmem = ShmemParams(
        arch=cell.arch, workload=cell.load, accel=cell.accel, suite=cell.suite, lab=lab
    )
    return record_of(ShmemScenario(client, shmem).run(), run, started, cell)


@dataclass(frozen=True)
class Progress:
    """What :func:`run_matrix` tells its caller: a pair starts (``record`` None) or ends."""

    cell: Cell
    run: int
    position: int  # 1-based among the pairs to run now
    to_run: int  # pairs to run now (this shard, minus those already recorded)
    already_done: int  # pairs of this shard recorded by an earlier invocation
    record: RunRecord | None = None


@dataclass
class MatrixOutcome:
    shard_pairs: int  # pairs that belong to this shard
    already_done: int  # of those, recorded before this invocation
    records: list[RunRecord] = field(default_factory=list)  # recorded now
    interrupted: bool = False

    @property
    def remaining(self) -> int:
        return self.shard_pairs - self.already_done - len(self.records)


def run_matrix(
    cells: Sequence[Cell],
    runs: int,
    shard: Shard,
    store: ResultStore,
    run_cell: RunCell,
    on_progress: Callable[[Progress], None] | None = None,
) -> MatrixOutcome:
    """Runs this shard's pairs that ``store`` lacks; returns what happened.  Exceptions
    from ``run_cell`` other than KeyboardInterrupt propagate (the records so far stay)."""
    mine = shard.select(pairs(cells, runs))
    done = store.done()
    todo = [(cell, run) for cell, run in mine if (cell.key, run) not in done]
    outcome = MatrixOutcome(shard_pairs=len(mine), already_done=len(mine) - len(todo))
    LOG.info(
        "shard %s: %d pairs, %d recorded before, %d to run",
        shard,
        len(mine),
        outcome.already_done,
        len(todo),
    )

    def tell(cell: Cell, run: int, position: int, record: RunRecord | None) -> None:
        if on_progress is not None:
            on_progress(Progress(cell, run, position, len(todo), outcome.already_done, record))

    try:
        for position, (cell, run) in enumerate(todo, start=1):
            tell(cell, run, position, None)
            record = run_cell(cell, run)
            if record.pair != (cell.key, run):
                raise ValueError(
                    f"run_cell({cell.key}, {run}) returned a record of "
                    f"{record.cell.key} run {record.run}"
                )
            store.append(record)
            outcome.records.append(record)
            tell(cell, run, position, record)
    except KeyboardInterrupt:
        outcome.interrupted = True
        LOG.warning(
            "interrupted: %d of %d pairs recorded in %s",
            outcome.already_done + len(outcome.records),
            outcome.shard_pairs,
            store.path,
        )
    return outcome
