"""`testbed boot`: real board containers, real QEMU (TCG here), real guests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import docker
import pytest

from testbed import labels
from tests.conftest import ROOT, default_sigint, labelled_containers, run_cli

pytestmark = pytest.mark.integration
# what no_leaks checks: the boot containers and the KVM probe's (only this module makes
# them; a lab of the user's or another xdist worker's may be up meanwhile)
NO_LEAKS_OF = [{labels.KIND: "boot"}, {labels.KIND: "probe"}]


@pytest.mark.parametrize(("arch", "uname"), [("armv7", "armv7l"), ("armv8", "aarch64")])
def test_boot_reports_the_guest(
    docker_client: docker.DockerClient,
    built_images: dict[str, str],
    no_leaks: None,
    arch: str,
    uname: str,
) -> None:
    proc = run_cli("boot", "--arch", arch, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["arch"] == arch and result["guest_uname"] == uname
    label = docker_client.images.get(built_images["board"]).labels[labels.QEMU_VERSION]
    assert result["qemu_version"] == label
    assert result["accel"] == ("kvm" if os.uname().machine == "aarch64" else "tcg")
    assert 0 < result["boot_seconds"] < 60
    assert result["root"] == "initramfs"
    assert "-nodefaults" in result["qemu_command"]


@pytest.mark.parametrize("arch", ["armv7", "armv8"])
def test_boot_from_the_ext3_root_disk(
    built_images: dict[str, str], no_leaks: None, arch: str
) -> None:
    proc = run_cli("boot", "--arch", arch, "--root", "disk", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["root"] == "disk"  # switch_root into the virtio-blk ext3 disk happened
    assert "testbed.root=/dev/vda" in " ".join(result["qemu_command"])


def test_boot_table_for_both_arches(built_images: dict[str, str], no_leaks: None) -> None:
    # wide enough that no cell wraps (in 80 columns, a longer boot time can split "armv7l")
    proc = run_cli("boot", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "armv7l" in proc.stdout and "aarch64" in proc.stdout


def test_missing_image_is_one_line(docker_client: docker.DockerClient, no_leaks: None) -> None:
    proc = run_cli("boot", "--arch", "armv8", env={"TESTBED_IMAGE_PREFIX": "testbed-absent"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: image testbed-absent/qemu-arm:bookworm-backports is missing: "
        "build it with `testbed images build`"
    )


@pytest.mark.skipif(os.uname().machine == "aarch64", reason="KVM may be usable on ARM hosts")
def test_kvm_refused_on_this_host_is_one_line(built_images: dict[str, str], no_leaks: None) -> None:
    proc = run_cli("boot", "--arch", "armv8", "--accel", "kvm")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--accel kvm is impossible here" in lines[0], proc.stderr


def test_ctrl_c_removes_the_board_container(
    docker_client: docker.DockerClient, built_images: dict[str, str], no_leaks: None
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed", "boot", "--arch", "armv7"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test runner started as a background job passes an ignored SIGINT on
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 60
        while not labelled_containers(docker_client, **{labels.KIND: "boot"}):
            assert time.monotonic() < deadline and proc.poll() is None, "no board container"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:  # a test that fails before its Ctrl-C leaves no boot running on behind it
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not labelled_containers(docker_client, **{labels.KIND: "boot"})
