"""The images that `testbed images build` produces."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys

import docker
import docker.errors
import pytest

from testbed import labels
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration


def test_board_image_carries_its_qemu_version(
    docker_client: docker.DockerClient, built_images: dict[str, str]
) -> None:
    image = docker_client.images.get(built_images["board"])
    version = image.labels[labels.QEMU_VERSION]
    assert image.labels[labels.QEMU_SUITE] == "bookworm-backports"
    out = docker_client.containers.run(
        image,
        ["qemu-system-arm", "--version"],
        remove=True,
        network_mode="none",
        labels=labels.for_object("test"),
    ).decode()
    assert re.search(rf"version {re.escape(version)}\b", out), out
    assert version.startswith("10.")  # bookworm-backports


KERNEL_KIND = (
    "import struct; d = open('kernel', 'rb').read(64); "
    "print('kernel:', 'zImage' if struct.unpack_from('<I', d, 0x24)[0] == 0x016F2818 "
    "else 'arm64-Image' if d[0x38:0x3C] == b'ARM\\x64' else 'unknown')"
)


@pytest.mark.parametrize(("arch", "kernel_kind"), [("armv7", "zImage"), ("armv8", "arm64-Image")])
def test_guest_artifacts_in_the_board_image(
    docker_client: docker.DockerClient, built_images: dict[str, str], arch: str, kernel_kind: str
) -> None:
    script = (
        f"cd /opt/testbed/guest/{arch} && cat manifest.json && "
        f'ls bin && od -A n -t x1 -N 2 -j 1080 rootfs.ext3 && python3 -c "{KERNEL_KIND}"'
    )
    out = docker_client.containers.run(
        built_images["board"],
        ["sh", "-c", script],
        remove=True,
        network_mode="none",
        labels=labels.for_object("test"),
    ).decode()
    manifest = json.loads(out[: out.index("}\n}") + 3])
    assert manifest["arch"] == arch
    assert any(m.endswith("virtio_net.ko") for m in manifest["modules"])
    assert any(m.endswith("ext4.ko") for m in manifest["modules"])
    assert all(name in out for name in ("dirtyram", "tstaeshm", "writeout.sh"))
    assert "53 ef" in out  # the ext2/3 superblock magic at byte 1080
    assert f"kernel: {kernel_kind}" in out


def test_images_list_json(built_images: dict[str, str]) -> None:
    proc = run_cli("images", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {entry["tag"]: entry for entry in json.loads(proc.stdout)}
    assert built_images["board"] in listed and built_images["nfs"] in listed
    assert listed[built_images["board"]]["qemu_version"]


# Under a prefix of its own (TESTBED_IMAGE_PREFIX), so that no other test's lab uses the
# image while it is relabelled: its layers come from the build cache of the real one.
INPUTS_SCRIPT = """
import json, docker
from testbed import images, labels
client = docker.from_env()
images.build_all(client, only="nfs")
(kept,) = images.build_all(client, only="nfs")
wanted = client.images.get(kept.tag).labels[labels.INPUTS]
images.label_image(client, kept.tag, {labels.INPUTS: "other-inputs"})
stale = client.images.get(kept.tag).id
(rebuilt,) = images.build_all(client, only="nfs")
image = client.images.get(rebuilt.tag)
client.images.remove(stale)
print(json.dumps({
    "kept": kept.up_to_date, "kept_steps": kept.steps,
    "rebuilt": not rebuilt.up_to_date, "rebuilt_steps": rebuilt.steps,
    "label_after": image.labels[labels.INPUTS], "wanted": wanted,
    "new_image": image.id != stale,
}))
"""


def test_an_image_built_from_other_inputs_is_built_again(
    docker_client: docker.DockerClient, built_images: dict[str, str]
) -> None:
    """The inputs label decides: unchanged, nothing is built; changed, the image is."""
    prefix = "gauss-testbed-inputs-test"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", INPUTS_SCRIPT],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TESTBED_IMAGE_PREFIX": prefix},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(f"{prefix}/nfs:latest")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["kept"] and found["kept_steps"] == 0, found
    assert found["rebuilt"] and found["rebuilt_steps"] > 0, found
    assert found["label_after"] == found["wanted"] and found["new_image"], found
