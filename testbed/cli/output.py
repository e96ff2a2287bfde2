"""Printing: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)


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
