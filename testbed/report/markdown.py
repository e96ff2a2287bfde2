"""The detection table and the checks table as GitHub-flavoured Markdown (a CI job summary:
``cat summary.md >> "$GITHUB_STEP_SUMMARY"``)."""

from __future__ import annotations

from collections.abc import Sequence

from testbed.known_defects import KnownDefect
from testbed.report.html import CHECK_COLUMNS, DETECTION_COLUMNS, FRONTIER_COLUMNS
from testbed.report.model import (
    CellSummary,
    CheckRow,
    FrontierLimit,
    hold_text,
    mbps_text,
    qemu_text,
)

_OUTCOME = {"pass": "pass", "fail": "**FAIL**", "known-defect": "known defect"}


def detection_table(summaries: Sequence[CellSummary]) -> str:
    rows = []
    for s in summaries:
        c = s.cell
        known = f"{s.known}" + (f" ({', '.join(s.known_defects)})" if s.known_defects else "")
        failing = f"**{s.failing}**" if s.failing else "0"
        rows.append(
            [
                cell(c.scenario), cell(qemu_text(s)), cell(c.arch), str(c.smp), cell(c.load),
                cell(c.accel), cell(hold_text(c)), cell(c.link), str(s.runs), failing,
                cell(known), f"{s.pages_lost_sum} / {s.pages_lost_max}", cell(s.first_failure),
            ]
        )  # fmt: skip
    return _table(DETECTION_COLUMNS, rows, numeric={3, 8, 9, 11})


def frontier_table(limits: Sequence[FrontierLimit]) -> str:
    rows = [
        [
            cell(f.link), mbps_text(f.link_bps), cell(f.arch), cell(f.qemu_version),
            str(f.migrations), mbps_text(f.highest_converged_bps),
            mbps_text(f.lowest_not_converged_bps),
        ]
        for f in limits
    ]  # fmt: skip
    return _table(FRONTIER_COLUMNS, rows, numeric={1, 4, 5, 6})


def checks_table(checks: Sequence[CheckRow]) -> str:
    rows = [
        [cell(k.name), cell(k.subject), _OUTCOME.get(k.outcome, cell(k.outcome)), cell(k.summary)]
        for k in checks
    ]
    return _table(CHECK_COLUMNS, rows, numeric=set())


def summary(
    title: str,
    summaries: Sequence[CellSummary],
    defects: Sequence[KnownDefect],
    checks: Sequence[CheckRow] = (),
    frontier: Sequence[FrontierLimit] = (),
) -> str:
    runs = sum(s.runs for s in summaries)
    failing = sum(s.failing for s in summaries)
    known = sum(s.known for s in summaries)
    parts = [
        f"## {cell(title)}",
        "",
        f"{runs} runs in {len(summaries)} cells: {failing} failing, {known} known defect, "
        f"{runs - failing - known} passing.",
        "",
    ]
    if checks:
        parts += ["### Checks", "", checks_table(checks), ""]
    parts += ["### Detection", "", detection_table(summaries), ""]
    if frontier:
        parts += ["### Convergence frontier", "", frontier_table(frontier), ""]
    if defects:
        parts += ["### Known defects", ""]
        for d in defects:
            fix = "no upstream fix known"
            if d.upstream_fix is not None:
                version = f", QEMU {d.upstream_fix.version}" if d.upstream_fix.version else ""
                fix = f"fix `{d.upstream_fix.commit[:12]}` {cell(d.upstream_fix.subject)}{version}"
            parts.append(f"- `{d.id}`: {cell(d.title)} ({fix})")
        parts.append("")
    return "\n".join(parts)


def cell(text: str) -> str:
    """Text safe inside a table cell: one line, no pipe, no HTML, no stray emphasis."""
    out = " ".join(text.split())
    for char in "\\|*_`[]<>":
        out = out.replace(char, "\\" + char)
    return out


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    head = "| " + " | ".join(cell(c) for c in columns) + " |"
    rule = "| " + " | ".join("---:" if i in numeric else "---" for i in range(len(columns))) + " |"
    body = ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([head, rule, *body])
