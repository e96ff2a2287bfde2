"""Builds the guest programs for the host from the same sources the images use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[2] / "images" / "guest"


def compile_program(name: str, dest: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler (cc or gcc) is needed to test the guest programs on the host"
    out = dest / name
    subprocess.run(
        [
            cc,
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-D_FILE_OFFSET_BITS=64",
            "-o",
            str(out),
            str(SOURCES / f"{name}.c"),
        ],
        check=True,
    )
    return out
