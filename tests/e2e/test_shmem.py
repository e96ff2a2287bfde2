"""Seed procedure 2 end to end: a real guest dirties a real ivshmem device, the daemon
replicates it from real QEMU's migration stream; every check is made to fail for real."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator

import docker
import pytest

from testbed.lab.lab import Lab
from testbed.protocol import Run, VmSpec, VmStart, VmStop
from tests.conftest import lab_for_module, run_cli, suite_topology
from tests.e2e import shmem_runs
from tests.e2e.shmem_runs import failing

pytestmark = pytest.mark.e2e

LAB = "tbshm"
# A negative control's guest program writes for 3 s, not 6: the fault it injects is caught
# by the final checkpoint (or after it) however many came before.
NEGATIVE_CONTROL = ("--duration", "3")
SERVICE_QMP = "/run/testbed/vm/guest/qmp-service.sock"


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, built_images: dict[str, str]) -> Iterator[str]:
    yield from lab_for_module(LAB)


run_shmem = functools.partial(shmem_runs.run_shmem, LAB)


# QEMU 10.0.2 now and then sends a page of armv7's remap workload while the guest writes it,
# and not again (README, "Known defects"; more often on a busy machine).  The checkpoint's page
# diff shows that shape, and the run is that known defect; then the test runs again, for
# the clean run it needs.  Any other loss is a FAIL and fails the test at once.
WRITE_IN_FLIGHT = "tcg-shmem-write-in-flight-10.0"


@pytest.mark.parametrize("arch", ["armv8", "armv7"])
def test_remap_workload_replicates_exactly(lab: str, arch: str) -> None:
    for _ in range(3):
        code, result, stderr = run_shmem("--arch", arch, "--workload", "remap")
        if (result.get("known_defect") or {}).get("id") != WRITE_IN_FLIGHT:
            break
        assert code == 0 and failing(result) == {"checkpoint"}, result["failures"]
    inexact = (result.get("daemon") or {}).get("inexact")  # the checkpoints that failed
    assert code == 0 and result["verdict"] == "pass", (result["failures"], inexact, stderr[-1500:])
    checks = {c["check"] for c in result["checks"]}
    assert checks == {
        "qemu-alive",
        "replication-completed",
        "checkpoint",
        "final-identity",
        "sum-r",
        "guest-checksum",
        "vm-resumed",
    }
    assert result["checkpoints"]["count"] >= 2 and result["checkpoints"]["inexact"] == 0
    assert (
        sum(1 for c in result["checks"] if c["check"] == "checkpoint")
        == result["checkpoints"]["count"]
    )
    final = result["daemon"]["final"]
    assert final["exact"] and final["differing_pages"] == []
    assert final["sum_r_src"] == final["sum_r_dest"]
    assert result["guest_sum"].split() == final["sum_r_src"].split()
    assert result["pages_copied"] > 256 and result["rounds"] > 0
    assert "summary mode=remap" in result["guest_summary"]
    assert result["daemon"]["resumed"] is True and result["stop_to_exit_seconds"] < 30


def test_drop_every_is_caught_by_the_checkpoints(lab: str) -> None:
    code, result, _ = run_shmem("--drop-every", "17", *NEGATIVE_CONTROL)
    assert code == 1 and result["verdict"] == "fail"
    dropped = set(result["daemon"]["dropped_pages"])
    assert dropped
    listed = {p for c in result["daemon"]["inexact"] for p in c["differing_pages"]}
    assert listed and listed <= dropped  # every differing page is one the daemon dropped
    assert "checkpoint" in failing(result)


def test_a_corrupted_replica_fails_final_identity_and_sum_r(lab: str) -> None:
    """The daemon alters one page of the replica just before its final checkpoint: that
    checkpoint, the final identity and sum -r fail, naming that page, and nothing else."""
    code, result, _ = run_shmem("--inject", "corrupt-replica", *NEGATIVE_CONTROL)
    assert code == 1 and result["verdict"] == "fail"
    assert failing(result) == {"checkpoint", "final-identity", "sum-r"}, result["failures"]
    daemon = result["daemon"]
    final = daemon["final"]
    assert daemon["corrupted_final_page"] == 7
    assert final["final"] and final["differing_pages"] == [7]
    assert [c["epoch"] for c in daemon["inexact"]] == [final["epoch"]]  # only the last one
    assert final["sum_r_src"].split() != final["sum_r_dest"].split()


def test_tampered_region_fails_the_guest_checksum(lab: str) -> None:
    code, result, _ = run_shmem("--inject", "tamper-region", *NEGATIVE_CONTROL)
    assert code == 1
    assert failing(result) == {"guest-checksum"}, result["failures"]
    final = result["daemon"]["final"]
    assert result["guest_sum"] and result["guest_sum"].split() != final["sum_r_src"].split()


def test_a_vm_left_paused_fails_vm_resumed(lab: str) -> None:
    code, result, _ = run_shmem("--inject", "paused-vm", *NEGATIVE_CONTROL)
    assert code == 1 and result["verdict"] == "fail"
    assert "vm-resumed" in failing(result), result["failures"]
    check = next(c for c in result["checks"] if c["check"] == "vm-resumed")
    assert check["summary"] == (
        "the VM is paused after the replication ended (the daemon had left it running)"
    )
    assert check["evidence"] == {"daemon_saw_running": True, "host_sees": "paused"}
    # the guest cannot be asked for its checksum while paused: said, not waited for
    assert failing(result) <= {"vm-resumed", "guest-checksum"}


def test_remote_replication_to_the_other_board(lab: str) -> None:
    code, result, _ = run_shmem("--remote")
    assert code == 0 and result["verdict"] == "pass", result["failures"]
    assert result["remote"] and result["daemon"]["destination"].startswith(
        f"receiver {suite_topology().node('gauss-b').address}:"
    )
    assert result["daemon"]["final"]["exact"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--qmp", "/nonexistent/qmp.sock", "--dest", "/tmp/x"],
            "no QMP socket at /nonexistent/qmp.sock",
        ),
        (
            ["--qmp", SERVICE_QMP, "--shm", "/dev/shm/none", "--dest", "/tmp/x"],
            "no shared-memory file /dev/shm/none",
        ),
        # any existing socket gets past the QMP check: the agent's
        (
            ["--qmp", "/run/testbed/agent.sock", "--dest", "/nonexistent/dir/dest"],
            "destination /nonexistent/dir/dest is not writable",
        ),
    ],
)
def test_daemon_bad_input_is_one_line(
    docker_client: docker.DockerClient, lab: str, args: list[str], message: str
) -> None:
    lab_obj = Lab(docker_client, LAB)
    lab_obj.exec("gauss-a", ["sh", "-c", "head -c 1048576 /dev/zero > /dev/shm/aeshmem"])
    try:
        code, out = lab_obj.exec("gauss-a", ["python3", "-m", "testbed.node", "replicate", *args])
    finally:
        lab_obj.exec("gauss-a", ["rm", "-f", "/dev/shm/aeshmem"])
    assert code == 2
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out


def test_no_shared_memory_device_is_one_line(docker_client: docker.DockerClient, lab: str) -> None:
    """A VM without the ivshmem device: the daemon says so, in one line."""
    lab_obj = Lab(docker_client, LAB)
    lab_obj.call("gauss-a", VmStart(VmSpec(arch="armv8", shm_path=None)))
    lab_obj.call("gauss-a", Run(["sh", "-c", "head -c 65536 /dev/zero > /dev/shm/aeshmem"]))
    try:
        code, out = lab_obj.exec(
            "gauss-a",
            [
                "python3",
                "-m",
                "testbed.node",
                "replicate",
                "--qmp",
                SERVICE_QMP,
                "--dest",
                "/tmp/dest",
            ],
        )
    finally:
        lab_obj.call("gauss-a", VmStop())
        lab_obj.call("gauss-a", Run(["rm", "-f", "/dev/shm/aeshmem"]))
        lab_obj.close()
    assert code == 2
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "the VM has no shared-memory device" in errors[0], out


def test_bad_shmem_parameters_are_one_line() -> None:
    for args, message in [
        (["--shm-size", "3K"], "--shm-size '3K' is not a size"),
        (["--duration", "0"], "--duration 0 is out of range"),
        (["--drop-every", "0"], "--drop-every"),
        (["--inject", "meteor"], "--inject meteor"),
    ]:
        started = time.monotonic()
        proc = run_cli(
            "run",
            "shmem",
            "--lab",
            LAB,
            *args,
            env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        )
        assert proc.returncode == 2 and time.monotonic() - started < 30
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
