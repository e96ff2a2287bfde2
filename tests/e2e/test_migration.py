"""Seed procedure 1 end to end: real lab, real QEMU, real guests (TCG here)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from testbed import labels
from testbed.lab import Lab
from testbed.scenarios.migration import MigrationParams, MigrationScenario
from tests.conftest import lab_for_module, run_cli

pytestmark = pytest.mark.e2e

LAB = "tbmig"


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, built_images: dict[str, str]) -> Iterator[str]:
    yield from lab_for_module(LAB)


def run_migration(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = run_cli("run", "migration", "--lab", LAB, "--json", *args, timeout=900)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.mark.parametrize("arch", ["armv7", "armv8"])
def test_migration_passes_with_every_check(
    docker_client: docker.DockerClient,
    built_images: dict[str, str],
    lab: str,
    arch: str,
    tmp_path: Path,
) -> None:
    code, result, stderr = run_migration("--arch", arch, "--report", str(tmp_path))
    assert code == 0 and result["verdict"] == "pass", (result["failures"], stderr[-2000:])
    label = docker_client.images.get(built_images["board"]).labels[labels.QEMU_VERSION]
    assert result["qemu_version"] == label and result["arch"] == arch
    assert result["boot"]["root"] == "disk"  # the guest runs from the NFS disk
    migration = result["migration"]
    assert migration["status"] == "completed" and migration["total_ms"] > 0
    assert migration["downtime_ms"] >= 0 and migration["transferred_bytes"] > 64 << 20
    assert migration["dirty_sync_count"] >= 2
    memory = result["memory"]
    assert memory["pages_compared"] == 512 * 256 and memory["pages_differing"] == 0
    dirtyram = result["migrations"][0]["dirtyram"]
    assert dirtyram["stale"] == 0 and dirtyram["passes_after"] >= 2 and dirtyram["checked"] > 0
    assert result["migrations"][0]["writeout"]["continues"]
    network = result["network"]
    assert network["reachable_before_switch"] is False  # the seed's observation
    assert network["reachable_after_switch"] is True and network["outage_ms"] > 0
    assert result["disk"]["fsck_clean"] is True
    assert result["dirtyram"]["stale"] == 0 and result["dirtyram"]["passes"] >= 3
    files = {p.name for p in tmp_path.iterdir()}
    assert f"migration-{arch}.json" in files
    assert f"migration-{arch}-console-1-gauss-a.log" in files
    assert f"migration-{arch}-console-final-gauss-b.log" in files
    assert f"migration-{arch}-qemu-1-gauss-a.log" in files
    final_console = (tmp_path / f"migration-{arch}-console-final-gauss-b.log").read_text()
    assert "writeout: " in final_console and "result=PASS" in final_console


def test_negative_control_names_the_altered_page(built_images: dict[str, str], lab: str) -> None:
    code, result, _ = run_migration("--arch", "armv8", "--corrupt-page", "131000")
    assert code == 1 and result["verdict"] == "fail"
    assert result["memory"]["differing_pages"] == [131000]
    assert result["memory"]["details"][0]["guest_physical"] == hex(0x40000000 + 131000 * 4096)
    assert any("differ between source and destination: [131000]" in f for f in result["failures"])


def test_round_trip_a_b_a(built_images: dict[str, str], lab: str) -> None:
    code, result, _ = run_migration("--arch", "armv7", "--round-trips", "1")
    assert code == 0 and result["verdict"] == "pass", result["failures"]
    hops = [(m["source"], m["destination"]) for m in result["migrations"]]
    assert hops == [("gauss-a", "gauss-b"), ("gauss-b", "gauss-a")]
    for m in result["migrations"]:
        assert m["verdict"] == "pass" and m["memory"]["pages_differing"] == 0
        assert m["network"]["reachable_after_switch"]
    assert result["disk"]["fsck_clean"]


def test_lab_link_cut_mid_transfer_fails_then_a_retry_succeeds(
    docker_client: docker.DockerClient, built_images: dict[str, str], lab: str
) -> None:
    lab_obj = Lab(docker_client, LAB)
    cut = threading.Event()
    restored = threading.Event()

    def on_progress(info: dict[str, Any]) -> None:
        if not cut.is_set() and info["status"] == "active" and info["transferred"] > 16 << 20:
            cut.set()
            assert lab_obj.exec("gauss-b", ["ip", "link", "set", "eth0", "down"])[0] == 0

    def on_step(text: str) -> None:
        if cut.is_set() and not restored.is_set() and "retrying" in text:
            assert lab_obj.exec("gauss-b", ["ip", "link", "set", "eth0", "up"])[0] == 0
            restored.set()

    # at 100 Mbit/s the dirty rate must stay well below the link (here 2.6 MB/s) or the
    # retry cannot converge
    params = MigrationParams(
        arch="armv8",
        bandwidth="100mbit",
        pages=2048,
        burst=32,
        stall_timeout=4,
        retries=1,
        migration_timeout=180,
        lab=LAB,
    )
    result = MigrationScenario(docker_client, params, on_step, on_progress).run()
    assert cut.is_set() and restored.is_set()
    first, second = result.migrations
    assert first.migration["status"] == "failed" and "no progress" in first.migration["error"]
    assert first.source_after_failure["status"] == "running"
    assert first.source_after_failure["stale"] == 0
    assert second.attempt == 2 and second.migration["status"] == "completed"
    assert second.memory["pages_differing"] == 0
    assert result.verdict == "pass", result.failures


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pages", "100", "--burst", "200"], "--burst 200 is larger than --pages 100"),
        (["--mem", "4096"], "--mem 4096 is out of range for armv7"),
        (["--pages", "200000", "--mem", "512"], "does not fit a guest with --mem 512"),
        (["--corrupt-page", "999999"], "--corrupt-page 999999 is outside the guest's RAM"),
        (["--bandwidth", "fast"], "--bandwidth: bad rate 'fast'"),
    ],
)
def test_bad_parameters_are_one_line(args: list[str], message: str) -> None:
    proc = run_cli(
        "run",
        "migration",
        "--lab",
        LAB,
        *args,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_lab_that_cannot_be_brought_up_is_one_line(docker_client: docker.DockerClient) -> None:
    proc = run_cli(
        "run", "migration", "--lab", "tbnoimg", env={"TESTBED_IMAGE_PREFIX": "testbed-absent"}
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: image testbed-absent/qemu-arm:bookworm-backports is missing: build it with "
        "`testbed images build`"
    ]


def test_monitor_and_console_attach_to_a_running_guest(
    docker_client: docker.DockerClient, built_images: dict[str, str], lab: str
) -> None:
    """The person's way in, through a real terminal: HMP `info status` and a shell
    command on the serial console of a guest the lab runs."""
    import os
    import pty
    import select
    import sys
    import time

    from tests.conftest import ROOT

    lab_obj = Lab(docker_client, LAB)
    lab_obj.up()
    spec = {
        "arch": "armv8",
        "tap": "tap0",
        "mac": "52:54:00:12:34:56",
        "guest_ip": "192.168.2.100/24",
        "guest_gateway": "192.168.2.1",
    }
    lab_obj.agent("gauss-a", "vm", "start", "--spec", json.dumps(spec))
    try:
        lab_obj.agent("gauss-a", "vm", "ready", "--timeout", "60")

        def converse(verb: str, typed: bytes, expect: bytes) -> bytes:
            pid, fd = pty.fork()
            if pid == 0:
                os.chdir(ROOT)
                os.execv(
                    sys.executable, [sys.executable, "-m", "testbed", verb, "gauss-a", "--lab", LAB]
                )
            seen = b""
            deadline = time.monotonic() + 30
            sent = False
            try:
                while expect not in seen and time.monotonic() < deadline:
                    ready, _, _ = select.select([fd], [], [], 0.5)
                    if ready:
                        try:
                            seen += os.read(fd, 4096)
                        except OSError:
                            break
                    if not sent and (b"leave with" in seen):
                        time.sleep(1)
                        os.write(fd, typed)
                        sent = True
            finally:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                os.close(fd)
            return seen

        assert b"VM status: running" in converse("monitor", b"info status\r", b"VM status")
        out = converse("console", b"echo tb-$((40+2))\r", b"tb-42")
        assert b"tb-42" in out
    finally:
        lab_obj.agent("gauss-a", "vm", "stop")
