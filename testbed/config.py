"""Settings read from the environment, in one place."""

from __future__ import annotations

import os

# Prefix of the image names: <prefix>/qemu-arm:<suite> and <prefix>/nfs:latest.
IMAGE_PREFIX = os.environ.get("TESTBED_IMAGE_PREFIX", "gauss-testbed")
