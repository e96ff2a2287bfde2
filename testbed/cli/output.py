"""Printing: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from testbed.protocol import MigrationSample

# Written to a file or a pipe (CI logs, `| tee`), rich would assume 80 columns and cut the
# tables' cells short with an ellipsis: there, lines may be as long as their content.
PIPE_WIDTH = 200


def _width(stream: TextIO) -> int | None:
    if "COLUMNS" in os.environ or stream.isatty():
        return None  # rich's own choice: the terminal's width, or $COLUMNS
    return PIPE_WIDTH


out = Console(width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*row)
    return t


def verdict_text(verdict: str) -> str:
    return {
        "pass": "[green]PASS[/green]",
        "fail": "[red]FAIL[/red]",
        "known-defect": "[yellow]KNOWN DEFECT[/yellow]",
    }.get(verdict, verdict)


def migration_progress(transferred: bool = True) -> Progress:
    """The display of running migrations on standard error: a bar per task, with the
    bytes transferred (``transferred``), a ``detail`` field and the time elapsed."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn()]
    if transferred:
        columns.append(DownloadColumn())
    columns += [TextColumn("{task.fields[detail]}"), TimeElapsedColumn()]
    return Progress(*columns, console=err, transient=True)


def show_sample(progress: Progress, task: TaskID, sample: MigrationSample) -> None:
    """A migration's progress event on its bar: bytes sent, rate, dirty-sync round."""
    progress.update(
        task,
        completed=sample.transferred,
        total=max(sample.total, sample.transferred) or None,
        detail=f"{sample.status} {sample.mbps:.0f} Mbit/s, round {sample.dirty_sync_count}",
    )
