"""Charts as SVG text, drawn with matplotlib's object API (``Figure``, no pyplot: no
display, no global figure state, nothing written to disk).

- :func:`migration_svg`: one migration's progress per iteration against wall time, as
  QEMU's ``tests/migration/guestperf/plot.py`` shows it: remaining RAM above; transfer
  rate and dirty rate below, with the link rate and the downtime window.
- :func:`frontier_svg`: per link, the highest dirty rate that still converged, beside the
  link rate.
- :func:`detection_svg`: per cell, how many runs failed (known defects apart) of how many.

Each SVG starts at ``<svg`` (no XML prolog) so that it can be inlined in HTML; element ids
are prefixed with the ``name`` given, so several SVGs can share one page."""

from __future__ import annotations

import contextlib
import io
import textwrap
from collections.abc import Sequence

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from testbed.matrix.records import LINKS, FrontierPoint, MigrationTrace
from testbed.report.model import CellSummary, cell_label, frontier_limits

FAIL = "#c0392b"
KNOWN = "#8e44ad"
PASS = "#27ae60"
REMAINING = "#1f77b4"
TRANSFER = "#2ca02c"
DIRTY = "#d62728"
LINK = "#333333"
_LINK_NAMES = {"100mbit": "100 Mbit/s", "1gbit": "1 Gbit/s", "unshaped": "unshaped"}


def migration_svg(trace: MigrationTrace, title: str, name: str) -> str:
    """One figure for one migration: remaining RAM, then transfer and dirty rate (Mbit/s),
    per iteration against ms since the migration started."""
    with _style(name):
        return _svg(_migration(trace, title, name))


def frontier_svg(points: Sequence[FrontierPoint], name: str = "frontier") -> str:
    """Per link, bars: the highest dirty rate that converged, one per (arch, QEMU); x marks:
    the lowest that did not; dashed: y = the link rate (the unshaped link has none)."""
    with _style(name):
        return _svg(_frontier(points, name))


def detection_svg(summaries: Sequence[CellSummary], name: str = "detection") -> str:
    """Per cell a bar of its runs: failing (red), known defect (purple), passing (green)."""
    with _style(name):
        return _svg(_detection(summaries, name))


def _migration(trace: MigrationTrace, title: str, name: str) -> Figure:
    fig = Figure(figsize=(8.0, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    samples = trace.iterations
    times = [s.t_ms for s in samples]
    state = "converged" if trace.converged else "did NOT converge"
    stats = (
        f"{trace.total_ms:.0f} ms, downtime {trace.downtime_ms:.0f} ms, "
        f"{trace.dirty_sync_count} dirty syncs, {state}"
    )
    fig.suptitle(f"{textwrap.shorten(title, 100)}\n{stats}", fontsize=9)
    remaining = [s.remaining_bytes / 2**20 for s in samples]
    (line,) = top.plot(times, remaining, marker="o", ms=3, color=REMAINING, label="remaining RAM")
    line.set_gid(f"{name}-remaining")
    step = max(1, len(samples) // 20)
    for sample, y in list(zip(samples, remaining, strict=True))[::step]:
        top.annotate(
            f"{sample.pass_no}",
            (sample.t_ms, y),
            fontsize=6,
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
        )
    top.set_ylabel("remaining (MiB)")
    transfer = [s.mbps for s in samples]
    dirty = [s.dirty_rate_pages_s * trace.page_size * 8 / 1e6 for s in samples]
    (line,) = bottom.plot(times, transfer, marker=".", color=TRANSFER, label="transfer rate")
    line.set_gid(f"{name}-transfer")
    (line,) = bottom.plot(times, dirty, marker=".", color=DIRTY, label="dirty rate")
    line.set_gid(f"{name}-dirty")
    if trace.link_bps:
        line = bottom.axhline(trace.link_bps / 1e6, color=LINK, ls="--", lw=1, label="link rate")
        line.set_gid(f"{name}-link")
    if trace.load_dirty_rate_bps:
        line = bottom.axhline(
            trace.load_dirty_rate_bps / 1e6,
            color=DIRTY,
            ls=":",
            lw=1,
            label="load's nominal dirty rate",
        )
        line.set_gid(f"{name}-nominal")
    bottom.set_ylabel("Mbit/s")
    bottom.set_xlabel("ms since the migration started (numbers: dirty-sync pass)")
    for ax in (top, bottom):
        _downtime(ax, trace, name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    if not samples:
        top.text(0.5, 0.5, "no per-iteration samples", transform=top.transAxes, ha="center")
    return fig


def _downtime(ax: Axes, trace: MigrationTrace, name: str) -> None:
    if trace.total_ms <= 0:
        return
    start = max(0.0, trace.total_ms - trace.downtime_ms)
    span = ax.axvspan(start, trace.total_ms, color="#999999", alpha=0.3, label="downtime")
    span.set_gid(f"{name}-downtime-{id(ax) % 1000}")


def _frontier(points: Sequence[FrontierPoint], name: str) -> Figure:
    fig = Figure(figsize=(8.0, 4.8), layout="constrained")
    ax = fig.subplots()
    links = [link for link in LINKS if any(p.link == link for p in points)]
    links += sorted({p.link for p in points} - set(LINKS))
    series = sorted({(p.arch, p.qemu_version) for p in points})
    limits = {(f.link, f.arch, f.qemu_version): f for f in frontier_limits(points)}
    width = 0.8 / max(1, len(series))
    labelled: set[str] = set()

    def once(label: str) -> str:
        if label in labelled:
            return "_nolegend_"
        labelled.add(label)
        return label

    for i, (arch, version) in enumerate(series):
        color = matplotlib.colormaps["tab10"](i % 10)
        for x, link in enumerate(links):
            limit = limits.get((link, arch, version))
            if limit is None:
                continue
            offset = x + (i - (len(series) - 1) / 2) * width
            if limit.highest_converged_bps is not None:
                bars = ax.bar(
                    offset,
                    limit.highest_converged_bps / 1e6,
                    width * 0.9,
                    color=color,
                    label=once(f"{arch}, QEMU {version}: highest that converged"),
                )
                bars[0].set_gid(f"{name}-converged-{i}-{x}")
            if limit.lowest_not_converged_bps is not None:
                (marks,) = ax.plot(
                    [offset],
                    [limit.lowest_not_converged_bps / 1e6],
                    "x",
                    color=FAIL,
                    ms=9,
                    mew=2,
                    label=once("lowest that did not converge"),
                )
                marks.set_gid(f"{name}-not-converged-{i}-{x}")
    for x, link in enumerate(links):
        bps = next((p.link_bps for p in points if p.link == link and p.link_bps), None)
        if bps:
            lines = ax.hlines(
                bps / 1e6,
                x - 0.45,
                x + 0.45,
                colors=LINK,
                linestyles="--",
                label=once("link rate (unshaped: no limit, so no line)"),
            )
            lines.set_gid(f"{name}-link-{x}")
    ax.set_xticks(range(len(links)), [_LINK_NAMES.get(link, link) for link in links])
    ax.set_ylabel("dirty rate (Mbit/s)")
    ax.set_title(
        "Convergence frontier: the highest dirty rate that still converged, per link", fontsize=10
    )
    if points:
        ax.set_yscale("log")  # plain numbers: with data kept out of mathtext, 10^3 would not render
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no frontier measurements", transform=ax.transAxes, ha="center")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def _detection(summaries: Sequence[CellSummary], name: str) -> Figure:
    height = 1.4 + 0.32 * max(1, len(summaries))
    fig = Figure(figsize=(9.0, height), layout="constrained")
    ax = fig.subplots()
    for i, s in enumerate(summaries):
        left = 0
        for count, color, label in (
            (s.failing, FAIL, "fail"),
            (s.known, KNOWN, "known defect"),
            (s.passing, PASS, "pass"),
        ):
            if count:
                bars = ax.barh(
                    i,
                    count,
                    left=left,
                    color=color,
                    height=0.7,
                    label=label if i == _first(summaries, label) else "_nolegend_",
                )
                bars[0].set_gid(f"{name}-{label.replace(' ', '-')}-{i}")
            left += count
        ax.text(s.runs, i, f"  {s.failing + s.known}/{s.runs}", va="center", fontsize=7)
    ax.set_yticks(range(len(summaries)), [cell_label(s.cell) for s in summaries], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("runs (label: not passing / runs)")
    ax.set_title("Detection: runs failing of runs, per cell", fontsize=10)
    ax.set_xlim(0, max((s.runs for s in summaries), default=1) * 1.15)
    if summaries:
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center")
    return fig


def _first(summaries: Sequence[CellSummary], label: str) -> int:
    """The index of the first cell that draws a bar of this kind (it carries the legend)."""
    for i, s in enumerate(summaries):
        count = {"fail": s.failing, "known defect": s.known, "pass": s.passing}[label]
        if count:
            return i
    return -1


def _style(name: str) -> contextlib.AbstractContextManager[object]:
    """Data never turns into mathtext (a ``$`` in a label), text stays text in the SVG,
    and a salt per figure keeps matplotlib's generated ids (clip paths) unique on a page."""
    return matplotlib.rc_context(
        {"text.parse_math": False, "svg.fonttype": "none", "svg.hashsalt": name}
    )


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]
