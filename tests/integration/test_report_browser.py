"""The report page in a real browser: headless Chromium renders the page made from
synthetic records; its DOM has the table rows and the inline charts, and its screenshot is
not blank.  Needs Debian's ``chromium`` (``apt-get install chromium``), no Docker."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from testbed.report.writer import write_report
from tests.unit import matrix_samples as samples

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FAIL_RED, KNOWN_PURPLE, PASS_GREEN = (0xC0, 0x39, 0x2B), (0x8E, 0x44, 0xAD), (0x27, 0xAE, 0x60)


def chromium() -> str:
    # Debian's chromium, or the Chrome that GitHub's runners carry
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    path = next((found for name in names if (found := shutil.which(name))), None) or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if path is None:
        reason = "headless Chromium is not installed: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs it: {reason}")
        pytest.skip(reason)
    return path


def browse(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


class Dom(HTMLParser):
    """Rows of the detection table (cell texts) and the svg elements of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.detection: list[list[str]] = []
        self.svgs: list[dict[str, str | None]] = []
        self._in_detection = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._in_detection = dict(attrs).get("class") == "detection"
        elif tag == "tr" and self._in_detection:
            self.detection.append([])
        elif tag == "td" and self._in_detection:
            self._cell = []
        elif tag == "svg":
            self.svgs.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.detection[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._in_detection = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """A PNG (8-bit RGB or RGBA, not interlaced) as (width, height, RGB pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    fields: tuple[int, ...] = struct.unpack(">IIBBBBB", header)
    width, height, depth, colour, _, _, interlace = fields
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    pixels = []
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if method == 1:
                line[i] = (line[i] + left) & 0xFF
            elif method == 2:
                line[i] = (line[i] + up) & 0xFF
            elif method == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif method == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 0xFF
        pixels += [(line[x], line[x + 1], line[x + 2]) for x in range(0, stride, channels)]
        previous = line
    return width, height, pixels


def near(colour: tuple[int, int, int], pixels: set[tuple[int, int, int]]) -> bool:
    return any(sum(abs(a - b) for a, b in zip(colour, p, strict=True)) <= 12 for p in pixels)


def test_the_report_page_renders_in_chromium(tmp_path: Path) -> None:
    browser = chromium()
    index = write_report(
        tmp_path / "report",
        samples.matrix(),
        samples.frontier(),
        title="browser test",
        generated_at=datetime(2026, 5, 4, 12, 0, tzinfo=UTC),
        host="ci-host",
    )
    url = index.resolve().as_uri()

    dom = Dom()
    dom.feed(browse(browser, tmp_path, "--dump-dom", url).stdout)
    rows = [row for row in dom.detection if row]
    assert len(rows) == 3
    assert rows[0][:3] == ["migration", "bookworm (7.2.22)", "armv7"]
    assert rows[0][9:11] == ["1", "2 (tcg-armv7-smp-hot-ram-loss-7.2)"]
    assert rows[2][:2] == ["shmem", "bookworm (7.2.22)"]
    assert len(dom.svgs) == 4  # detection, frontier, two migrations
    assert all(svg.get("viewbox") or svg.get("viewBox") for svg in dom.svgs)

    shot = tmp_path / "page.png"
    browse(browser, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", url)
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 2400)
    colours = set(pixels)
    assert len(colours) > 50, f"only {len(colours)} colours: a blank page?"
    white = sum(p == (255, 255, 255) for p in pixels)
    assert white < 0.97 * len(pixels), "the page is almost all white"
    for name, colour in (("fail", FAIL_RED), ("known", KNOWN_PURPLE), ("pass", PASS_GREEN)):
        assert near(colour, colours), f"no {name} bar colour on the screenshot"
