"""The digest of an image build's inputs: what changes it and what does not."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from testbed import image_inputs
from tests.conftest import ROOT

ARGS = {"BASE_IMAGE": "debian:bookworm-slim", "QEMU_SUITE": "bookworm-backports"}
BASES = {"debian:bookworm-slim": "sha256:aaaa"}
PINS = ["pyroute2==0.9.7", "qemu.qmp==0.0.6"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "images" / "guest").mkdir(parents=True)
    (tmp_path / "images" / "guest" / "init").write_text("#!/bin/sh\n")
    (tmp_path / "images" / "build-guest.sh").write_text("set -eu\n")
    (tmp_path / "testbed" / "node").mkdir(parents=True)
    (tmp_path / "testbed" / "node" / "agent.py").write_text("AGENT = 1\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "README.md").write_text("# x\n")
    (tmp_path / "Dockerfile.qemu-arm").write_text("FROM scratch\n")
    return tmp_path


def digest(
    root: Path,
    args: dict[str, str] = ARGS,
    bases: dict[str, str] = BASES,
    pins: list[str] = PINS,
) -> str:
    return image_inputs.digest(root, "Dockerfile.qemu-arm", args, bases, pins)


def test_same_inputs_same_digest_whatever_the_times(tree: Path) -> None:
    before = digest(tree)
    os.utime(tree / "testbed" / "node" / "agent.py", (0, 0))
    (tree / "testbed" / "node" / "__pycache__").mkdir()
    (tree / "testbed" / "node" / "__pycache__" / "agent.cpython-311.pyc").write_bytes(b"\0")
    (tree / "unrelated.txt").write_text("not in the context\n")
    assert digest(tree) == before


@pytest.mark.parametrize(
    "edit",
    [
        "node code",
        "package data",
        "guest script",
        "new guest file",
        "removed file",
        "mode",
        "renamed file",
        "dockerfile",
        "readme",
        "pyproject",
    ],
)
def test_every_input_file_changes_the_digest(tree: Path, edit: str) -> None:
    before = digest(tree)
    if edit == "node code":
        (tree / "testbed" / "node" / "agent.py").write_text("AGENT = 2\n")
    elif edit == "package data":
        (tree / "testbed" / "data").mkdir()
        (tree / "testbed" / "data" / "seed.toml").write_text("x = 1\n")
    elif edit == "guest script":
        (tree / "images" / "build-guest.sh").write_text("set -eux\n")
    elif edit == "new guest file":
        (tree / "images" / "guest" / "tbload.c").write_text("int main(void){}\n")
    elif edit == "removed file":
        (tree / "images" / "guest" / "init").unlink()
    elif edit == "mode":
        (tree / "images" / "guest" / "init").chmod(0o755)
    elif edit == "renamed file":
        shutil.move(tree / "images" / "guest" / "init", tree / "images" / "guest" / "init2")
    elif edit == "dockerfile":
        (tree / "Dockerfile.qemu-arm").write_text("FROM scratch\nRUN true\n")
    elif edit == "readme":
        (tree / "README.md").write_text("# y\n")
    elif edit == "pyproject":
        (tree / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert digest(tree) != before


def test_build_arguments_bases_and_pins_change_the_digest(tree: Path) -> None:
    before = digest(tree)
    assert digest(tree, args={**ARGS, "QEMU_SUITE": "bookworm"}) != before
    assert digest(tree, bases={"debian:bookworm-slim": "sha256:bbbb"}) != before
    assert digest(tree, pins=["pyroute2==0.9.8", "qemu.qmp==0.0.6"]) != before


def test_the_context_dirs_are_what_dockerignore_lets_in() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    let_in = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert let_in == {*image_inputs.CONTEXT_DIRS, "build/wheels"}
