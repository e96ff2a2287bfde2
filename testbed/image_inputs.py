"""What a board or NFS image is built from, as one digest.

``testbed images build`` labels each image it builds with the digest of everything the
build reads (``io.gauss-testbed.inputs``): the Dockerfile, the files of the build context
(``images/``, and the wheels, through their sources: ``pyproject.toml``, ``README.md``
and every file of the ``testbed`` package), the pinned versions of the wheels of the node
agent's dependencies, the build arguments and the base images' IDs.  A later build whose
digest equals the label has nothing to do, so it checks the image and skips the wheel
build and ``docker build`` altogether (12 s with a warm cache before, on 2 cores).

What the digest cannot see is what ``docker build``'s own cache cannot see either: the
Debian packages that a ``RUN apt-get`` step installs.  ``--no-cache`` rebuilds anyway."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

# Directories of the source tree that .dockerignore lets into the build context, besides
# build/wheels/ (made from WHEEL_SOURCES).  A unit test keeps the two lists in sync.
CONTEXT_DIRS = ("images",)
# What `pip wheel .` packages into the testbed wheel (its metadata embeds the README).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "testbed")
_SKIPPED_PARTS = ("__pycache__",)
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _files(root: Path, names: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for name in names:
        path = root / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part in _SKIPPED_PARTS for part in p.parts)
                and p.suffix not in _SKIPPED_SUFFIXES
            ]
    return sorted(found)


def digest(
    root: Path,
    dockerfile: str,
    buildargs: Mapping[str, str],
    base_ids: Mapping[str, str],
    pins: Iterable[str],
) -> str:
    """The digest of one image's build inputs (hex, 24 characters).  Paths, contents and
    the executable bit of every file count (COPY keeps the mode); modification times do
    not (docker's cache ignores them too)."""
    h = hashlib.sha256()

    def part(label: str, value: bytes) -> None:
        h.update(label.encode() + b"\0" + len(value).to_bytes(8, "big") + value)

    part("dockerfile", (root / dockerfile).read_bytes())
    for path in _files(root, (*CONTEXT_DIRS, *WHEEL_SOURCES)):
        name = path.relative_to(root).as_posix()
        executable = b"x" if path.stat().st_mode & 0o111 else b"-"
        part(f"file {name}", executable + path.read_bytes())
    for key in sorted(buildargs):
        part(f"arg {key}", buildargs[key].encode())
    for name in sorted(base_ids):
        part(f"base {name}", base_ids[name].encode())
    for pin in sorted(pins):
        part("pin", pin.encode())
    return h.hexdigest()[:24]
