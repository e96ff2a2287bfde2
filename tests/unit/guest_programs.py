"""Builds the guest programs for the host from the same sources the images use."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[2] / "images" / "guest"


def compile_program(name: str, dest: Path, also_as: str | None = None) -> Path:
    """Compiles ``images/guest/{name}.c`` into ``dest/name``; with ``also_as``, the same
    binary is also ``dest/also_as`` (a hard link, as build-guest.sh installs tbload as
    dirtyram: a program may act on the name it was invoked as)."""
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
    if also_as:
        alias = dest / also_as
        alias.unlink(missing_ok=True)
        os.link(out, alias)
    return out


def tstaeshm_page(page: int, writes: list[int]) -> bytes:
    """A page as tstaeshm leaves it: word i holds (write << 24) ^ (page << 12) ^ i, with
    ``writes[i]`` the write that last reached word i."""
    mask = (1 << 64) - 1
    return b"".join(
        (((w << 24) ^ (page << 12) ^ i) & mask).to_bytes(8, "little") for i, w in enumerate(writes)
    )
