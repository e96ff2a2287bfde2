"""dirtyram's self-check, on the host: it must report a page whose stamp changed behind
its back (what a lost dirty page looks like after migration), and nothing otherwise.
dirtyram is tbload invoked under the name dirtyram (images/guest/tbload.c)."""

from __future__ import annotations

import re
import signal
import struct
import subprocess
from pathlib import Path

import pytest

from tests.unit.guest_programs import compile_program

PAGE = 4096
STATUS = re.compile(r"dirtyram: bursts=(\d+) written=(\d+) checked=(\d+) stale=(\d+) passes=(\d+)")


@pytest.fixture(scope="module")
def dirtyram(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tbload = compile_program("tbload", tmp_path_factory.mktemp("dirtyram"), also_as="dirtyram")
    return tbload.with_name("dirtyram")


def start(binary: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.search(r"stride=(\d+) page_size=(\d+) region=(0x[0-9a-f]+)", first)
    assert match, first
    assert int(match.group(2)) == PAGE
    return proc, int(match.group(3), 16)


def stop(proc: subprocess.Popen[str]) -> tuple[str, int]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    return out, proc.returncode


def wait_for_passes(proc: subprocess.Popen[str], passes: int) -> list[str]:
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, "dirtyram ended early"
        lines.append(line)
        m = STATUS.match(line)
        if m and int(m.group(5)) >= passes:
            return lines


def test_clean_run_reports_no_stale_page(dirtyram: Path) -> None:
    proc, _ = start(dirtyram, "64", "8", "5")
    lines = wait_for_passes(proc, 20)
    out, rc = stop(proc)
    summary = out.strip().splitlines()[-1]
    assert "stale=0" in summary and "result=PASS" in summary, summary
    assert rc == 0
    m = STATUS.match(lines[-1])
    assert m and int(m.group(3)) > 0  # pages were really checked


def passes_of(lines: list[str]) -> int:
    return max(int(m.group(5)) for m in map(STATUS.match, lines) if m)


def test_altered_stamp_is_reported_with_its_page(dirtyram: Path) -> None:
    proc, region = start(dirtyram, "64", "8", "5")
    passes = passes_of(wait_for_passes(proc, 2))  # every page written at least once
    victim = 37
    seen: list[str] = []
    with open(f"/proc/{proc.pid}/mem", "r+b", buffering=0) as mem:
        # A poke that lands between dirtyram's check of the page and its rewrite is
        # overwritten unseen: poke again until one is seen (the first, nearly always).
        for _ in range(5):
            mem.seek(region + victim * PAGE + 16)  # the stamp's burst number
            burst = struct.unpack("<Q", mem.read(8))[0]
            mem.seek(region + victim * PAGE + 16)
            mem.write(struct.pack("<Q", burst - 8))  # as if one write had been lost
            lines = wait_for_passes(proc, passes + 2)  # the page is checked once a pass
            seen += lines
            passes = passes_of(lines)
            if any("stale_pages=" in line for line in lines):
                break
    out, rc = stop(proc)
    out = "".join(seen) + out
    assert re.search(rf"stale_pages=(\d+,)*{victim}\b", out), out
    summary = out.strip().splitlines()[-1]
    assert "stale=1 " in summary and "result=FAIL" in summary, summary
    assert rc == 1


@pytest.mark.parametrize("args", [("8", "16", "50"), ("0", "1", "50"), ("x", "1", "2"), ()])
def test_bad_arguments(dirtyram: Path, args: tuple[str, ...]) -> None:
    proc = subprocess.run([str(dirtyram), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "dirtyram" in proc.stderr
