"""Printing: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

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
