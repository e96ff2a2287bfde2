"""Reports: SVG charts with the expected series, one self-contained HTML page, Markdown
tables for CI, and the report directory."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from testbed.known_defects import load_defects
from testbed.matrix.records import FrontierPoint, MigrationTrace
from testbed.report import markdown, plots
from testbed.report.model import frontier_limits, frontier_points, summarize
from testbed.report.writer import write_report
from tests.unit import matrix_samples as samples

SVG = "{http://www.w3.org/2000/svg}"


def ids(svg: str) -> set[str]:
    root = ET.fromstring(svg)  # valid XML, or this raises
    assert root.tag == f"{SVG}svg"
    return {element.get("id", "") for element in root.iter()}


def texts(svg: str) -> str:
    return " ".join(t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text"))


def test_migration_plot_has_remaining_transfer_dirty_link_and_downtime() -> None:
    svg = plots.migration_svg(samples.trace(), "armv7 run 1 migration 1", name="m1")
    found = ids(svg)
    for series in ("remaining", "transfer", "dirty", "link", "nominal"):
        assert f"m1-{series}" in found, series
    assert any(i.startswith("m1-downtime") for i in found)
    words = texts(svg)
    for label in (
        "remaining RAM",
        "transfer rate",
        "dirty rate",
        "link rate",
        "downtime",
        "ms since the migration started",
        "840 ms, downtime 40 ms, 8 dirty syncs",
    ):
        assert label in words, label
    line = ET.fromstring(svg).find(f".//*[@id='m1-remaining']/{SVG}path")
    assert line is not None and line.get("d", "").count("L") == len(samples.trace().iterations) - 1


def test_migration_plot_without_samples_or_link() -> None:
    trace = MigrationTrace(1, 0.0, 0.0, False, 0, None, None, [])
    svg = plots.migration_svg(trace, "empty", name="m0")
    assert "no per-iteration samples" in texts(svg) and "did NOT converge" in texts(svg)
    assert "m0-link" not in ids(svg)


def test_frontier_plot_has_bars_misses_and_link_lines_but_none_for_unshaped() -> None:
    svg = plots.frontier_svg(samples.frontier())
    found = ids(svg)
    for series in range(2):
        for link in range(3):  # 100mbit, 1gbit, unshaped
            assert f"frontier-converged-{series}-{link}" in found
            assert f"frontier-not-converged-{series}-{link}" in found
    assert {"frontier-link-0", "frontier-link-1"} <= found and "frontier-link-2" not in found
    words = texts(svg)
    for label in (
        "100 Mbit/s",
        "1 Gbit/s",
        "unshaped",
        "unshaped: no limit, so no line",
        "armv7, QEMU 7.2.22: highest that converged",
        "lowest that did not converge",
    ):
        assert label in words, label
    assert "1000" in words and "mathdefault" not in svg  # plain tick labels, no raw mathtext
    assert "no frontier measurements" in texts(plots.frontier_svg([]))


def test_frontier_points_come_from_the_migrations() -> None:
    points = frontier_points(samples.matrix())
    assert len(points) == 6  # every migration record of the sample (shmem has none)
    assert {p.link for p in points} == {"100mbit"} and {p.link_bps for p in points} == {10**8}
    assert sum(p.converged for p in points) == 3


def test_frontier_limits_per_link_and_series_in_link_order() -> None:
    points = samples.frontier()
    points.append(FrontierPoint("1gbit", 10**9, 1.0e6, True, "armv7", "7.2.22"))  # a slow one
    limits = frontier_limits(list(reversed(points)))
    assert [(f.link, f.arch) for f in limits] == [
        ("100mbit", "armv7"), ("100mbit", "armv8"), ("1gbit", "armv7"), ("1gbit", "armv8"),
        ("unshaped", "armv7"), ("unshaped", "armv8"),
    ]  # fmt: skip
    first = limits[0]
    assert first.highest_converged_bps == pytest.approx(0.6e8)
    assert first.lowest_not_converged_bps == pytest.approx(1.2e8)
    assert (first.link_bps, first.migrations, limits[2].migrations) == (10**8, 3, 4)
    assert limits[4].link_bps is None
    only_failing = frontier_limits([FrontierPoint("1gbit", 10**9, 2e9, False, "armv8", "10.0.2")])
    assert only_failing[0].highest_converged_bps is None
    assert frontier_limits([]) == []


def test_detection_chart_has_a_bar_per_outcome_and_cell() -> None:
    summaries = summarize(samples.matrix())
    svg = plots.detection_svg(summaries)
    found = ids(svg)
    # cell 0: 7.2 hot (fail 1, known 2, pass 1); 1: shmem (known 1, pass 1); 2: 10.0 (pass 2)
    assert [s.cell for s in summaries] == [samples.HOT_7_2, samples.HOT_10_0, samples.SHMEM]
    assert {"detection-fail-0", "detection-known-defect-0", "detection-pass-0"} <= found
    assert {"detection-pass-1", "detection-known-defect-2", "detection-pass-2"} <= found
    assert "detection-fail-1" not in found and "detection-fail-2" not in found
    assert "3/4" in texts(svg) and "known defect" in texts(svg)


def test_summaries_count_runs() -> None:
    s = summarize(samples.matrix())[0]
    assert (s.runs, s.failing, s.known, s.passing) == (4, 1, 2, 1)
    assert (s.pages_lost_sum, s.pages_lost_max) == (256 + 3082 + 200, 3082)
    assert s.known_defects == ("tcg-armv7-smp-hot-ram-loss-7.2",)
    assert s.first_failure == "ram-pages: 256 differ"  # run 1's
    assert s.qemu_versions == ("7.2.22",)


class Tables(HTMLParser):
    """The page's tables as rows of cell texts, and its svg and script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.svgs = 0
        self.forbidden: list[str] = []
        self._table = ""
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("class") or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "svg":
            self.svgs += 1
        elif tag in ("script", "link", "img", "iframe") or "src" in a:
            self.forbidden.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture()
def matrix_report(tmp_path: Path) -> Path:
    return write_report(
        tmp_path / "report",
        samples.matrix(),
        samples.frontier(),
        title="matrix <test>",
        generated_at=datetime(2026, 5, 4, 12, 0, tzinfo=UTC),
        host="ci-host",
    )


def test_the_page_has_the_detection_table_defects_and_inline_svgs(matrix_report: Path) -> None:
    page = matrix_report.read_text()
    parsed = Tables()
    parsed.feed(page)
    rows = parsed.tables["detection"]
    assert rows[0][:3] == ["scenario", "QEMU suite (version)", "arch"]
    assert rows[1] == [
        "migration", "bookworm (7.2.22)", "armv7", "2", "hot:256", "tcg", "5 s", "100mbit",
        "4", "1", "2 (tcg-armv7-smp-hot-ram-loss-7.2)", "3538 / 3082", "ram-pages: 256 differ",
    ]  # fmt: skip
    assert rows[2][1] == "bookworm-backports (10.0.2)" and rows[2][9] == "0"
    assert rows[3][:2] == ["shmem", "bookworm (7.2.22)"] and rows[3][6:8] == ["none", "unshaped"]
    defects = parsed.tables["defects"]
    assert [r[0] for r in defects[1:]] == [
        "tcg-armv7-smp-hot-ram-loss-7.2",
        "tcg-dirty-sync-fastpath",
    ]
    assert "03bfc2188f06 physmem: Fix migration dirty bitmap coherency" in defects[2][3]
    assert defects[1][3] == "none known"
    frontier = parsed.tables["frontier"]
    assert frontier[0][-1] == "lowest that did not" and len(frontier) == 7
    assert frontier[1] == [
        "100mbit", "100.0 Mbit/s", "armv7", "7.2.22", "3", "60.0 Mbit/s", "120.0 Mbit/s",
    ]  # fmt: skip
    assert parsed.svgs == 4  # detection, frontier, a migration of each migration cell
    assert parsed.svgs == page.count("<svg ")
    assert not parsed.forbidden
    assert "made 2026-05-04T12:00:00+00:00 on ci-host" in page
    assert "<title>matrix &lt;test&gt;</title>" in page and "<?xml" not in page
    assert not re.search(r"(href|src)=\"https?:", page)


def test_everything_from_data_is_escaped(tmp_path: Path) -> None:
    index = write_report(tmp_path, [samples.matrix()[1]], checks=samples.checks())
    page = index.read_text()
    assert "<b>3082</b>" not in page
    assert "&lt;b&gt;3082&lt;/b&gt; pages differ | first at 0x4000_0000 &amp; *stale*" in page


def test_a_single_run_page_has_its_checks(tmp_path: Path) -> None:
    index = write_report(tmp_path, [samples.matrix()[1]], checks=samples.checks(), title="run")
    parsed = Tables()
    parsed.feed(index.read_text())
    run = {row[0]: row[1] for row in parsed.tables["run"]}
    assert (
        run["run"] == "2"
        and run["QEMU"] == "7.2.22"
        and run["failed checks"] == "ram-pages, network"
    )
    checks = parsed.tables["checks"]
    assert checks[0] == ["check", "subject", "outcome", "evidence"]
    assert checks[1][:3] == ["ram-pages", "migration 1: gauss-a -> gauss-b", "fail"]
    assert [row[2] for row in checks[1:]] == ["fail", "pass", "pass"]
    assert parsed.svgs == 1  # its one migration; no detection chart for one run
    assert 'class="verdict-fail">FAIL' in index.read_text()


def test_report_directory(matrix_report: Path) -> None:
    directory = matrix_report.parent
    assert sorted(p.name for p in directory.iterdir()) == [
        "index.html",
        "results.json",
        "summary.md",
    ]
    results = json.loads((directory / "results.json").read_text())
    assert results["format"] == "gauss-testbed-report/1" and results["host"] == "ci-host"
    assert len(results["records"]) == 8 and len(results["frontier"]) == 18
    assert results["records"][0] == samples.matrix()[0].to_json()


def test_markdown_detection_table() -> None:
    table = markdown.detection_table(summarize(samples.matrix())).splitlines()
    assert table[0].startswith("| scenario | QEMU suite (version) | arch | smp |")
    assert table[1].startswith("| --- | --- | --- | ---: |")
    assert table[2] == (
        "| migration | bookworm (7.2.22) | armv7 | 2 | hot:256 | tcg | 5 s | 100mbit | 4 | **1** "
        "| 2 (tcg-armv7-smp-hot-ram-loss-7.2) | 3538 / 3082 | ram-pages: 256 differ |"
    )
    assert len(table) == 5
    assert all(row.count(" | ") == table[0].count(" | ") for row in table)


def test_markdown_checks_table_escapes_cells() -> None:
    table = markdown.checks_table(samples.checks()).splitlines()
    assert table[0] == "| check | subject | outcome | evidence |"
    assert table[2] == (
        "| ram-pages | migration 1: gauss-a -\\> gauss-b | **FAIL** | ram-pages: \\<b\\>3082"
        "\\</b\\> pages differ \\| first at 0x4000\\_0000 & \\*stale\\* |"
    )
    assert table[2].count(" | ") == 3  # the pipe of the data is escaped: still four cells


def test_markdown_summary(matrix_report: Path) -> None:
    text = (matrix_report.parent / "summary.md").read_text()
    assert text.startswith("## matrix \\<test\\>\n")
    assert "8 runs in 3 cells: 1 failing, 3 known defect, 4 passing." in text
    assert "### Detection" in text and "### Checks" not in text
    assert "- `tcg-dirty-sync-fastpath`: " in text and "fix `03bfc2188f06`" in text
    assert "### Convergence frontier" in text
    assert "| 100mbit | 100.0 Mbit/s | armv7 | 7.2.22 | 3 | 60.0 Mbit/s | 120.0 Mbit/s |" in text
    assert "| unshaped | - | armv8 | 10.0.2 | 3 | 1500.0 Mbit/s | 3000.0 Mbit/s |" in text


def test_the_defects_legend_names_ids_it_does_not_know(tmp_path: Path) -> None:
    record = samples.record(verdict="known-defect", known_defect="gone-now", checks_failed=("x",))
    index = write_report(tmp_path, [record], defects=load_defects())
    assert "not in known-defects.toml" in index.read_text()


def test_data_in_charts_stays_text() -> None:
    """No markup and no mathtext from data: the text comes out as written, escaped."""
    point = FrontierPoint("100mbit", 10**8, 5e7, True, "armv7", "7.2 <b>$x^2$</b> & co")
    svg = plots.frontier_svg([point])
    assert "armv7, QEMU 7.2 <b>$x^2$</b> & co: highest that converged" in texts(svg)
    assert "<b>" not in svg
