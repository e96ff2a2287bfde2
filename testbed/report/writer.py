"""A report directory: ``index.html`` (one self-contained page), ``summary.md`` (for a CI
job summary) and ``results.json`` (the records the page was made from)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from testbed import __version__
from testbed.known_defects import KnownDefect, load_defects
from testbed.matrix.records import FrontierPoint, JsonObject, MigrationTrace, RunRecord
from testbed.report import html, markdown, plots
from testbed.report.model import CellSummary, CheckRow, cell_label, frontier_limits, summarize

LOG = logging.getLogger(__name__)

MAX_MIGRATION_PLOTS = 12
RESULTS_FORMAT = "gauss-testbed-report/1"


def write_report(
    directory: str | Path,
    records: Sequence[RunRecord],
    frontier: Sequence[FrontierPoint] = (),
    checks: Sequence[CheckRow] | None = None,
    title: str = "gauss-testbed detection matrix",
    *,
    defects: Sequence[KnownDefect] | None = None,
    generated_at: datetime | None = None,
    host: str | None = None,
) -> Path:
    """Writes the three files into ``directory`` (made if missing); returns index.html's
    path.  With exactly one record the page also has a section for that run (and
    ``checks`` as its checks table)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    when = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
    where = host or socket.gethostname()
    summaries = summarize(records)
    named = sorted({r.known_defect for r in records if r.known_defect})
    known = {d.id: d for d in (load_defects() if defects is None else defects)}
    page = html.Page(
        title=title,
        generated_at=when,
        host=where,
        version=__version__,
        summaries=summaries,
        defects=[known[i] for i in named if i in known],
        unknown_defect_ids=[i for i in named if i not in known],
        charts=charts(records, summaries, frontier),
        run=records[0] if len(records) == 1 else None,
        checks=checks or (),
        frontier=frontier_limits(frontier),
    )
    index = out / "index.html"
    index.write_text(html.render(page), encoding="utf-8")
    (out / "summary.md").write_text(
        markdown.summary(title, summaries, page.defects, checks or (), page.frontier),
        encoding="utf-8",
    )
    results: JsonObject = {
        "format": RESULTS_FORMAT,
        "title": title,
        "generated_at": when,
        "host": where,
        "records": [r.to_json() for r in records],
        "frontier": [p.to_json() for p in frontier],
        "checks": [k.to_json() for k in checks or ()],
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    LOG.info("report: %s", index)
    return index


def charts(
    records: Sequence[RunRecord],
    summaries: Sequence[CellSummary],
    frontier: Sequence[FrontierPoint],
) -> list[html.Chart]:
    """The detection chart (a matrix), the frontier (when measured) and the migrations: all
    of a single run's; of a matrix, those of each cell's first run that did not pass (or
    its first run), at most :data:`MAX_MIGRATION_PLOTS`."""
    result = []
    if len(records) > 1:
        result.append(
            html.Chart(
                plots.detection_svg(summaries),
                "Runs per cell: failing (red), known defect (purple), passing (green).",
            )
        )
    if frontier:
        result.append(
            html.Chart(
                plots.frontier_svg(frontier),
                "Per link the highest dirty rate that still converged (bars) and the lowest "
                "that did not (x); dashed: the link rate. The unshaped link has no rate line.",
            )
        )
    chosen: list[tuple[RunRecord, MigrationTrace]] = []
    if len(records) == 1:
        chosen = [(records[0], m) for m in records[0].migrations]
    else:
        for s in summaries:
            run = next((r for r in s.records if r.verdict != "pass"), s.records[0])
            chosen += [(run, m) for m in run.migrations]
    if len(chosen) > MAX_MIGRATION_PLOTS:
        LOG.info("report: %d migrations, plotting the first %d", len(chosen), MAX_MIGRATION_PLOTS)
    for n, (run, trace) in enumerate(chosen[:MAX_MIGRATION_PLOTS], start=1):
        title = f"{cell_label(run.cell)} run {run.run} migration {trace.index}"
        result.append(
            html.Chart(
                plots.migration_svg(trace, title, name=f"migration-{n}"),
                f"{title} ({run.verdict}): remaining RAM, transfer and dirty rate per "
                "iteration; grey: downtime.",
            )
        )
    return result
