"""tstaeshm on the host, mapping a file: its checksum is `sum -r`'s, its writers change
pages, and bad input is one line."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.unit.guest_programs import compile_program


@pytest.fixture(scope="module")
def tstaeshm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_program("tstaeshm", tmp_path_factory.mktemp("tstaeshm"))


@pytest.fixture()
def region(tmp_path: Path) -> Path:
    path = tmp_path / "aeshmem"
    path.write_bytes(os.urandom(1 << 20))
    return path


def tst_sum(binary: Path, path: Path) -> tuple[str, str]:
    out = subprocess.run(
        [str(binary), "sum", "--file", str(path)], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"sum -r (\d+) (\d+)", out)
    assert m, out
    return m.group(1), m.group(2)


def coreutils_sum(path: Path) -> tuple[str, str]:
    fields = subprocess.run(
        ["sum", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    return fields[0], fields[1]


def test_sum_equals_sum_r(tstaeshm: Path, region: Path) -> None:
    assert tst_sum(tstaeshm, region) == coreutils_sum(region)


@pytest.mark.parametrize("mode", ["dirty", "remap"])
def test_writers_change_pages(tstaeshm: Path, region: Path, mode: str) -> None:
    before = region.read_bytes()
    out = subprocess.run(
        [str(tstaeshm), mode, "--file", str(region), "--duration", "0.5", "--seed", "7"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(rf"summary mode={mode} writes=(\d+) pages=(\d+)", out)
    assert m and int(m.group(1)) > 0, out
    after = region.read_bytes()
    changed = sum(before[i : i + 4096] != after[i : i + 4096] for i in range(0, len(after), 4096))
    assert changed == int(m.group(2))
    assert tst_sum(tstaeshm, region) == coreutils_sum(region)


@pytest.mark.parametrize("args", [[], ["scribble"], ["dirty", "0x1001"]])
def test_bad_arguments(tstaeshm: Path, args: list[str]) -> None:
    proc = subprocess.run([str(tstaeshm), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
