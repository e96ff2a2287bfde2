"""Where the guest artifacts live in the board image, and what they are."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from testbed.arch import GuestArch

GUEST_DIR = Path(os.environ.get("TESTBED_GUEST_DIR", "/opt/testbed/guest"))
READY_PATTERN = r"TESTBED-READY arch=(\S+) kernel=(\S+) root=(\S+) net=(\S+)"


@dataclass(frozen=True)
class GuestArtifacts:
    kernel: Path
    initrd: Path
    rootfs: Path
    bin_dir: Path
    manifest: dict[str, object]

    @classmethod
    def for_arch(cls, arch: GuestArch, base: Path = GUEST_DIR) -> GuestArtifacts:
        d = base / arch.name
        manifest_path = d / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"no guest artifacts for {arch.name} in {d}")
        return cls(
            kernel=d / "kernel",
            initrd=d / "initrd.img",
            rootfs=d / "rootfs.ext3",
            bin_dir=d / "bin",
            manifest=json.loads(manifest_path.read_text()),
        )


PROMPT_PATTERN = r"guest# "
