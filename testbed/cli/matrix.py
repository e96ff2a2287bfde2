"""testbed matrix run|report: detection power, measured.

``run`` expands the cells, runs this shard's (cell, run) pairs that the results file does
not hold yet, and appends each record as it is made (Ctrl-C keeps them; the same command
resumes).  ``report`` merges the results files of the shards into one report.

Every value is checked before anything runs or is created: a bad one is one line, exit 2."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from testbed.cli.output import err, out, print_json, table
from testbed.config import DEFAULT_LAB
from testbed.errors import UserError
from testbed.matrix import cells as matrix_cells
from testbed.matrix.records import SCENARIOS, SUITE_QEMU, Cell, RunRecord
from testbed.matrix.runner import Progress
from testbed.matrix.store import ResultStore
from testbed.report.model import CellSummary, cell_label, frontier_points, summarize

DEFAULT_RESULTS = "matrix/results.jsonl"
DEFAULT_REPORT = "matrix/report"
DEFAULT_RUNS = 5
DEFAULT_LOADS = {"migration": ["seed", "hot:256"], "shmem": ["dirty", "remap"]}


def cmd_run(args: argparse.Namespace) -> int:
    from testbed.config import check_lab_name
    from testbed.matrix import runner

    check_lab_name(args.lab)
    smps = _numbers("--smp", args.smp or ("1,2" if args.scenario == "migration" else "1"))
    if args.scenario == "shmem" and smps != [1]:
        raise UserError(
            f"--smp {args.smp}: the shmem scenario runs its guest with one CPU",
            "leave --smp out for shmem",
        )
    cells = matrix_cells.expand(
        suites=_words(args.suite),
        arches=_words(args.arch),
        smps=smps,
        loads=args.load or DEFAULT_LOADS.get(args.scenario, []),
        accels=_words(args.accel),
        scenario=args.scenario,
        hold_s=args.hold,
        bandwidth=args.bandwidth,
    )
    if not args.hold <= 600:  # as `run migration --hold`; below 0 and NaN: expand() said so
        raise UserError(f"--hold {args.hold:g} is out of range", "use 0 (no hold) to 600 seconds")
    matrix_cells.check_runs(args.runs)
    shard = matrix_cells.parse_shard(args.shard)
    check_writable_file("--results", Path(args.results))
    if args.report:
        check_writable_dir("--report", Path(args.report))
    store = ResultStore(args.results)
    store.done()  # a damaged results file is refused now, before anything runs

    def on_progress(p: Progress) -> None:
        where = escape(f"[{p.position}/{p.to_run}] {p.cell.key} run {p.run}")
        if p.record is None:
            err.print(f"{where} ...", highlight=False, soft_wrap=True)
        else:
            r = p.record
            known = escape(f" ({r.known_defect})") if r.known_defect else ""
            failure = escape(f": {r.first_failure}") if r.verdict == "fail" else ""
            err.print(
                f"{where}: {_verdict(r.verdict)}{known} in {r.wall_seconds:.0f} s{failure}",
                highlight=False,
                soft_wrap=True,
            )

    lab: str = args.lab

    def run_cell(cell: Cell, run: int) -> RunRecord:
        # Looked up at each call: the scenario rewrite (and tests) provide runner.run_cell.
        return runner.run_cell(cell, run, lab=lab)

    outcome = runner.run_matrix(cells, args.runs, shard, store, run_cell, on_progress)
    keys = {cell.key for cell in cells}
    records = [r for r in store.records() if r.cell.key in keys and r.run <= args.runs]
    summaries = summarize(records)
    if args.report:
        from testbed.report.writer import write_report

        index = write_report(args.report, records, frontier_points(records), title=args.title)
        err.print(f"report: {escape(str(index))}", highlight=False)
    if args.json:
        print_json(
            {
                "results": str(store.path),
                "shard": str(shard),
                "shard_pairs": outcome.shard_pairs,
                "recorded_before": outcome.already_done,
                "recorded_now": len(outcome.records),
                "remaining": outcome.remaining,
                "interrupted": outcome.interrupted,
                "cells": [s.to_json() for s in summaries],
            }
        )
    else:
        _print_summaries(escape(f"matrix ({store.path}, shard {shard})"), summaries)
    if outcome.interrupted:
        err.print(
            f"interrupted: {outcome.remaining} of {outcome.shard_pairs} runs of shard {shard} "
            f"left; the records so far are in {escape(str(store.path))}: run the same command "
            "to resume",
            highlight=False,
        )
        return 130
    return 1 if any(s.failing for s in summaries) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from testbed.matrix.store import merge
    from testbed.report.writer import write_report

    check_writable_dir("--out", Path(args.out))
    for path in args.files:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such results file", "give files that `matrix run` wrote")
    records = merge(args.files)
    summaries = summarize(records)
    index = write_report(args.out, records, frontier_points(records), title=args.title)
    if args.json:
        print_json(
            {
                "report": str(index),
                "files": list(args.files),
                "runs": len(records),
                "cells": [s.to_json() for s in summaries],
            }
        )
    else:
        _print_summaries(f"matrix report ({len(args.files)} results files)", summaries)
        out.print(f"report: {escape(str(index))}", highlight=False)
    return 1 if any(s.failing for s in summaries) else 0


def check_writable_file(option: str, path: Path) -> None:
    """The file can be created or appended to, found without creating anything."""
    if path.exists():
        if not path.is_file():
            raise UserError(f"{option} {path}: not a regular file", "give a file path")
        if not os.access(path, os.W_OK):
            raise UserError(f"{option} {path}: not writable", "give a writable file")
        return
    _check_creatable(option, path)


def check_writable_dir(option: str, path: Path) -> None:
    """The directory exists and is writable, or can be created (nothing is created)."""
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{option} {path}: not a directory", "give a directory path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{option} {path}: not writable", "give a writable directory")
        _try_creating(option, path, path)
        return
    _check_creatable(option, path)


def _check_creatable(option: str, path: Path) -> None:
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is not a directory", "give another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot create it in {parent}", "give a writable path")
    _try_creating(option, path, parent)


def _try_creating(option: str, path: Path, directory: Path) -> None:
    """os.access says yes to root everywhere, also in /proc where nothing can be created:
    so an empty directory is made there and removed at once (nothing is left)."""
    try:
        made = tempfile.mkdtemp(prefix=".testbed-probe-", dir=directory)
    except OSError as exc:
        raise UserError(
            f"{option} {path}: cannot create it in {directory} ({exc.strerror})",
            "give a writable path",
        ) from None
    os.rmdir(made)


def _words(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


def _numbers(option: str, text: str) -> list[int]:
    numbers = []
    for word in _words(text):
        try:
            numbers.append(int(word))
        except ValueError:
            raise UserError(f"{option} {word}: not a number", "use e.g. 1,2") from None
    return numbers


def _verdict(verdict: str) -> str:
    return {"pass": "[green]pass[/green]", "known-defect": "[magenta]known defect[/magenta]"}.get(
        verdict, "[red]FAIL[/red]"
    )


def _print_summaries(title: str, summaries: Sequence[CellSummary]) -> None:
    rows = [
        [
            escape(cell_label(s.cell)),
            escape(", ".join(s.qemu_versions)),
            str(s.runs),
            f"[red]{s.failing}[/red]" if s.failing else "0",
            escape(f"{s.known} {' '.join(s.known_defects)}".strip()),
            f"{s.pages_lost_sum} / {s.pages_lost_max}",
            escape(s.first_failure[:60]),
        ]
        for s in summaries
    ]
    columns = ["cell", "QEMU", "runs", "failing", "known defect", "pages lost", "first failure"]
    out.print(table(title, columns, rows))


def register(sub: Any) -> None:
    matrix = sub.add_parser(
        "matrix",
        help="detection power: run cells N times each, then report",
        description="Run a matrix of cells (scenario x QEMU suite x arch x smp x load x "
        "accel) N times each, resumably and sharded; report the results.",
    )
    verbs = matrix.add_subparsers(dest="matrix_command", required=True, metavar="VERB")
    run = verbs.add_parser(
        "run",
        help="run this shard's (cell, run) pairs not yet in the results file",
        description="Runs every (cell, run) pair of this shard that the results file lacks; "
        "each record is appended as soon as it is made, so Ctrl-C and a rerun resume. "
        "Exit 0 when no run failed (known defects do not fail), 1 when one did.",
    )
    suites = ",".join(SUITE_QEMU)
    run.add_argument("--scenario", choices=list(SCENARIOS), default="migration")
    run.add_argument("--suite", default=suites, metavar="S,S", help=f"QEMU suites ({suites})")
    run.add_argument("--arch", default="armv7,armv8", metavar="A,A", help="(armv7,armv8)")
    run.add_argument("--smp", metavar="N,N", help="guest CPUs (migration: 1,2; shmem: 1)")
    run.add_argument(
        "--load",
        action="append",
        metavar="L",
        help="a load text, repeatable (migration: seed, hot:256; shmem: dirty, remap)",
    )
    run.add_argument("--accel", default="auto", metavar="tcg|kvm|auto", help="(auto); A,A too")
    run.add_argument("--hold", type=float, default=0.0, metavar="S", help="hold phase (0: none)")
    run.add_argument("--bandwidth", metavar="RATE", help="shape the lab link, e.g. 100mbit")
    run.add_argument("--runs", type=int, default=DEFAULT_RUNS, metavar="N", help="runs per cell")
    run.add_argument("--shard", default="1/1", metavar="I/N", help="this machine's share (1/1)")
    run.add_argument("--results", default=DEFAULT_RESULTS, metavar="FILE", help="JSON lines")
    run.add_argument("--report", metavar="DIR", help="write the report here afterwards")
    run.add_argument("--lab", default=DEFAULT_LAB, metavar="NAME", help="the lab to use")
    run.add_argument("--title", default="gauss-testbed detection matrix", help=argparse.SUPPRESS)
    run.add_argument("--json", action="store_true", help="machine-readable output")
    run.set_defaults(func=cmd_run)
    report = verbs.add_parser(
        "report",
        help="merge results files (the shards of a matrix) into one report",
        description="Merges results files and writes index.html, summary.md and results.json. "
        "Exit 0 when no run failed, 1 when one did.",
    )
    report.add_argument("files", nargs="+", metavar="FILE", help="results files (JSON lines)")
    report.add_argument("--out", default=DEFAULT_REPORT, metavar="DIR", help="report directory")
    report.add_argument("--title", default="gauss-testbed detection matrix")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=cmd_report)
