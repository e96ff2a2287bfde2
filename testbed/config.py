"""Settings and names that every part shares, in one place (no heavy imports here: the
command line reads them before it knows whether it needs Docker)."""

from __future__ import annotations

import os
import re

from testbed.errors import UserError

# Prefix of the image names: <prefix>/qemu-arm:<suite> and <prefix>/nfs:latest.
IMAGE_PREFIX = os.environ.get("TESTBED_IMAGE_PREFIX", "gauss-testbed")

# Where QEMU comes from: bookworm-backports gives 10.0.x, bookworm 7.2.
SUITES = ("bookworm-backports", "bookworm")
DEFAULT_SUITE = "bookworm-backports"

# Engine and image platforms (see testbed.platforms for what each means).
PLATFORM_NAMES = ("linux/amd64", "linux/arm64")

DEFAULT_LAB = "gauss"
_LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,20}$")


def check_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name):
        raise UserError(
            f"bad lab name {name!r}",
            "use up to 21 lower-case letters, digits and dashes, starting with a letter",
        )
    return name
