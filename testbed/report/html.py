"""The report as ONE self-contained HTML page: inline CSS, inline SVG charts, no script,
no external resource.  Everything that comes from data is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from testbed.known_defects import KnownDefect
from testbed.matrix.records import RunRecord
from testbed.report.model import (
    CellSummary,
    CheckRow,
    FrontierLimit,
    hold_text,
    mbps_text,
    qemu_text,
)

DETECTION_COLUMNS = (
    "scenario", "QEMU suite (version)", "arch", "smp", "load", "accel", "hold", "link",
    "runs", "failing", "known defect", "pages lost (sum / max)", "first failure",
)  # fmt: skip
CHECK_COLUMNS = ("check", "subject", "outcome", "evidence")
FRONTIER_COLUMNS = (
    "link", "link rate", "arch", "QEMU", "migrations", "highest dirty rate that converged",
    "lowest that did not",
)  # fmt: skip

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 78em;
       padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fdecea; } tr.known-defect td { background: #f3e9f7; }
tr.pass td { background: #eef8f0; } tr.skipped td { color: #777; }
.verdict-fail { color: #c0392b; font-weight: bold; }
.verdict-known-defect { color: #8e44ad; font-weight: bold; }
.verdict-pass { color: #1e8449; font-weight: bold; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 12px; }
code { background: #f4f4f4; padding: 0 .2em; }
details { margin: .3em 0; } summary { cursor: pointer; }
"""


@dataclass(frozen=True)
class Chart:
    svg: str  # from testbed.report.plots (starts at <svg, trusted: made by matplotlib)
    caption: str  # data: escaped


@dataclass(frozen=True)
class Page:
    title: str
    generated_at: str
    host: str
    version: str  # testbed's
    summaries: Sequence[CellSummary]
    defects: Sequence[KnownDefect]  # the entries the records name
    charts: Sequence[Chart] = ()
    run: RunRecord | None = None  # the single run this page is about, if it is about one
    checks: Sequence[CheckRow] = ()
    unknown_defect_ids: Sequence[str] = field(default_factory=tuple)
    frontier: Sequence[FrontierLimit] = ()


def render(page: Page) -> str:
    runs = sum(s.runs for s in page.summaries)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(page.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(page.title)}</h1>",
        f'<p class="meta">made {escape(page.generated_at)} on {escape(page.host)} by '
        f"gauss-testbed {escape(page.version)}: {runs} run{'s' * (runs != 1)} in "
        f"{len(page.summaries)} cell{'s' * (len(page.summaries) != 1)}</p>",
    ]
    if page.run is not None:
        parts.append(_run_section(page.run, page.checks))
    elif page.checks:
        parts.append(_checks_section(page.checks))
    parts.append(_detection_section(page.summaries))
    parts.append(_defects_section(page.defects, page.unknown_defect_ids))
    if page.frontier:
        parts.append(_frontier_section(page.frontier))
    if page.charts:
        parts.append('<h2 id="plots">Plots</h2>')
        parts.extend(_chart(c) for c in page.charts)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _detection_section(summaries: Sequence[CellSummary]) -> str:
    rows = []
    for s in summaries:
        c = s.cell
        cls = "fail" if s.failing else "known-defect" if s.known else "pass"
        known = f"{s.known}" + (f" ({', '.join(s.known_defects)})" if s.known_defects else "")
        cells = [
            (c.scenario, ""), (qemu_text(s), ""), (c.arch, ""), (str(c.smp), "n"),
            (c.load, ""), (c.accel, ""), (hold_text(c), ""), (c.link, ""),
            (str(s.runs), "n"), (str(s.failing), "n"), (known, ""),
            (f"{s.pages_lost_sum} / {s.pages_lost_max}", "n"), (s.first_failure, ""),
        ]  # fmt: skip
        rows.append(_row(cells, cls))
    body = "\n".join(rows) or _empty_row(len(DETECTION_COLUMNS), "no runs recorded")
    return (
        '<h2 id="detection">Detection</h2>\n'
        '<table class="detection"><thead>'
        + _head(DETECTION_COLUMNS)
        + f"</thead><tbody>\n{body}\n</tbody></table>"
    )


def _frontier_section(limits: Sequence[FrontierLimit]) -> str:
    rows = []
    for f in limits:
        cells = [
            (f.link, ""), (mbps_text(f.link_bps), "n"), (f.arch, ""), (f.qemu_version, ""),
            (str(f.migrations), "n"), (mbps_text(f.highest_converged_bps), "n"),
            (mbps_text(f.lowest_not_converged_bps), "n"),
        ]  # fmt: skip
        rows.append(_row(cells, ""))
    return (
        '<h2 id="frontier">Convergence frontier</h2>\n'
        '<table class="frontier"><thead>'
        + _head(FRONTIER_COLUMNS)
        + "</thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
    )


def _defects_section(defects: Sequence[KnownDefect], unknown: Sequence[str]) -> str:
    if not defects and not unknown:
        return '<h2 id="known-defects">Known defects</h2><p>No run matched a known defect.</p>'
    rows = []
    for d in defects:
        fix = "none known"
        if d.upstream_fix is not None:
            f = d.upstream_fix
            fix = f"<code>{escape(f.commit[:12])}</code> {escape(f.subject)}" + (
                f" (QEMU {escape(f.version)})" if f.version else ""
            )
        span = f"[{d.introduced or '…'}, {d.fixed or '…'})"
        rows.append(
            f'<tr id="defect-{escape(d.id)}"><td><code>{escape(d.id)}</code></td>'
            f"<td>{escape(d.title)}<details><summary>note</summary>{escape(d.note)}</details>"
            f"</td><td>{escape(span)}</td><td>{fix}</td></tr>"
        )
    for defect_id in unknown:
        rows.append(
            f"<tr><td><code>{escape(defect_id)}</code></td>"
            "<td>not in known-defects.toml (any more)</td><td></td><td></td></tr>"
        )
    return (
        '<h2 id="known-defects">Known defects</h2>\n<table class="defects"><thead>'
        + _head(("id", "title", "QEMU versions covered", "upstream fix"))
        + "</thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
    )


def _run_section(run: RunRecord, checks: Sequence[CheckRow]) -> str:
    c = run.cell
    verdict = f'<span class="verdict-{escape(run.verdict)}">{escape(run.verdict.upper())}</span>'
    if run.known_defect:
        verdict += f' (<a href="#defect-{escape(run.known_defect)}">{escape(run.known_defect)}</a>)'
    facts = [
        ("cell", c.key),
        ("run", str(run.run)),
        ("QEMU", run.qemu_version),
        ("started", run.started_at),
        ("wall time", f"{run.wall_seconds:.1f} s"),
        ("pages lost", str(run.pages_lost)),
        ("failed checks", ", ".join(run.checks_failed) or "none"),
        ("first failure", run.first_failure or "none"),
        ("migrations", str(len(run.migrations))),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return (
        f'<h2 id="run">Run: {verdict}</h2>\n<table class="run">{rows}</table>\n'
        + _checks_section(checks)
    )


def _checks_section(checks: Sequence[CheckRow]) -> str:
    rows = [
        _row([(k.name, ""), (k.subject, ""), (k.outcome, ""), (k.summary, "")], k.outcome)
        for k in checks
    ]
    body = "\n".join(rows) or _empty_row(len(CHECK_COLUMNS), "no checks given")
    return (
        '<h2 id="checks">Checks</h2>\n<table class="checks"><thead>'
        + _head(CHECK_COLUMNS)
        + f"</thead><tbody>\n{body}\n</tbody></table>"
    )


def _chart(chart: Chart) -> str:
    return f"<figure>{chart.svg}<figcaption>{escape(chart.caption)}</figcaption></figure>"


def _head(columns: Sequence[str]) -> str:
    return "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"


def _row(cells: Sequence[tuple[str, str]], cls: str) -> str:
    tds = "".join(
        f'<td class="{klass}">{escape(text)}</td>' if klass else f"<td>{escape(text)}</td>"
        for text, klass in cells
    )
    return f'<tr class="{escape(cls)}">{tds}</tr>'


def _empty_row(columns: int, text: str) -> str:
    return f'<tr><td colspan="{columns}">{escape(text)}</td></tr>'
