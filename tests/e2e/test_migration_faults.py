"""Faults during seed procedure 1 end up in verdicts: a link cut, a board or a QEMU killed, the
NFS server paused, each at a real point of a real migration (TCG here).  The scenario's
own checks and their negative controls: test_migration.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import docker
import pytest

from testbed.lab.lab import Lab
from testbed.protocol import MigrationSample
from testbed.scenarios.migration import MigrationParams, MigrationResult, MigrationScenario
from tests.conftest import SUITE_TOPOLOGY, lab_for_module, node_processes, run_cli

pytestmark = pytest.mark.e2e

LAB = "tbmigf"


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, built_images: dict[str, str]) -> Iterator[str]:
    yield from lab_for_module(LAB)


def run_scenario(scenario: MigrationScenario) -> tuple[MigrationResult, str]:
    """The run's result, and what to show when it is not the one expected: its failures
    and the end of the guest's last console (the final steps' lines)."""
    result = scenario.run()
    consoles = "\n".join(
        f"--- {name} (end):\n" + "\n".join(text.splitlines()[-25:])
        for name, text in scenario.artifacts.items()
    )
    return result, f"{result.failures}\n{consoles}"


def test_lab_link_cut_mid_transfer_fails_then_a_retry_succeeds(
    docker_client: docker.DockerClient, lab: str
) -> None:
    lab_obj = Lab(docker_client, LAB)
    cut = threading.Event()
    restored = threading.Event()

    def on_progress(sample: MigrationSample) -> None:
        if not cut.is_set() and sample.status == "active" and sample.transferred > 16 << 20:
            cut.set()
            assert lab_obj.exec("gauss-b", ["ip", "link", "set", "eth0", "down"])[0] == 0

    def on_step(text: str) -> None:
        if cut.is_set() and not restored.is_set() and "retrying" in text:
            assert lab_obj.exec("gauss-b", ["ip", "link", "set", "eth0", "up"])[0] == 0
            restored.set()

    # at 100 Mbit/s the dirty rate must stay well below the link or the retry cannot converge
    params = MigrationParams(
        arch="armv8",
        bandwidth="100mbit",
        loads=("seed:2048:32:50",),
        stall_timeout=4,
        retries=1,
        migration_timeout=180,
        lab=LAB,
    )
    result, evidence = run_scenario(MigrationScenario(docker_client, params, on_step, on_progress))
    assert cut.is_set() and restored.is_set()
    first, second = result.migrations
    assert first.migration is not None and first.migration.status == "failed"
    assert "no progress" in first.migration.error
    assert first.source_after_failure is not None
    assert first.source_after_failure.status == "running" and first.source_after_failure.stale == 0
    assert second.attempt == 2 and second.migration and second.migration.status == "completed"
    assert result.verdict.value == "pass", evidence


@pytest.mark.parametrize("retries", [0, 1])
def test_destination_killed_mid_migration_is_a_verdict(
    docker_client: docker.DockerClient, lab: str, retries: int
) -> None:
    killed = threading.Event()

    def on_progress(sample: MigrationSample) -> None:
        if not killed.is_set() and sample.status == "active" and sample.transferred > 8 << 20:
            killed.set()
            docker_client.containers.get(f"{LAB}-gauss-b").kill()

    params = MigrationParams(
        arch="armv8",
        bandwidth="100mbit",
        loads=("seed:2048:64:50",),
        stall_timeout=5,
        retries=retries,
        lab=LAB,
    )
    result, evidence = run_scenario(MigrationScenario(docker_client, params, None, on_progress))
    assert killed.is_set()
    first = result.migrations[0]
    assert first.fault == "destination gauss-b died during migration 1: container exited 137"
    assert first.source_after_failure is not None
    assert first.source_after_failure.status == "running"
    assert first.source_after_failure.stale == 0
    if retries == 0:
        assert result.verdict.value == "fail"
        assert result.first_failure.endswith(
            "migration-completed: destination gauss-b died during migration 1: container exited 137"
        )
    else:  # the lab is healed (gauss-b started again) and the migration tried again
        assert len(result.migrations) == 2 and result.migrations[1].migration is not None
        assert result.migrations[1].migration.status == "completed"
        assert result.verdict.value == "pass", evidence
    assert run_cli("up", "--lab", LAB, "--topology", SUITE_TOPOLOGY).returncode == 0


def test_source_qemu_killed_mid_migration_is_a_verdict(
    docker_client: docker.DockerClient, lab: str
) -> None:
    killed = threading.Event()

    def on_progress(sample: MigrationSample) -> None:
        if not killed.is_set() and sample.status == "active" and sample.transferred > 8 << 20:
            killed.set()
            docker_client.containers.get(f"{LAB}-gauss-a").exec_run(["pkill", "-9", "qemu-system"])

    params = MigrationParams(arch="armv8", bandwidth="100mbit", loads=("seed:2048:64:50",), lab=LAB)
    result, evidence = run_scenario(MigrationScenario(docker_client, params, None, on_progress))
    assert killed.is_set() and result.verdict.value == "fail", evidence
    first = result.migrations[0]
    assert first.fault is not None and first.fault.startswith(
        "source QEMU on gauss-a died during migration 1"
    ), first.fault
    intact = [c for c in result.checks if c.check == "source-intact"]
    assert intact and intact[0].failed
    assert node_processes(docker_client, LAB) == {}


def test_board_killed_in_the_final_steps_fails_the_procedure(
    docker_client: docker.DockerClient, lab: str
) -> None:
    """The negative control of `procedure`: the migration and its checks pass, then the
    destination board dies while the loads are stopped and the guest powers off."""
    killed = threading.Event()

    def on_step(text: str) -> None:
        if not killed.is_set() and "stopping the loads" in text:
            killed.set()
            docker_client.containers.get(f"{LAB}-gauss-b").kill()

    params = MigrationParams(arch="armv8", mem_mb=256, loads=("seed:2048:64:50",), lab=LAB)
    result, evidence = run_scenario(MigrationScenario(docker_client, params, on_step))
    assert killed.is_set() and result.verdict.value == "fail"
    assert result.migrations[0].verdict == "pass", evidence  # the checks before it
    procedure = [c for c in result.checks if c.check == "procedure"]
    assert len(procedure) == 1 and procedure[0].failed, evidence
    assert "gauss-b" in procedure[0].summary and "the final steps" in procedure[0].summary
    assert procedure[0].summary == result.fault
    assert node_processes(docker_client, LAB) == {}
    assert run_cli("up", "--lab", LAB, "--topology", SUITE_TOPOLOGY).returncode == 0


def test_nfs_server_paused_for_5_s_mid_migration_passes(
    docker_client: docker.DockerClient, lab: str
) -> None:
    paused = threading.Event()

    def pause_nfs() -> None:
        container = docker_client.containers.get(f"{LAB}-nfs")
        container.pause()
        threading.Timer(5.0, container.unpause).start()

    def on_progress(sample: MigrationSample) -> None:
        if not paused.is_set() and sample.status == "active" and sample.transferred > 8 << 20:
            paused.set()
            pause_nfs()

    params = MigrationParams(arch="armv8", bandwidth="100mbit", loads=("seed:2048:64:50",), lab=LAB)
    result, evidence = run_scenario(MigrationScenario(docker_client, params, None, on_progress))
    assert paused.is_set()
    assert result.verdict.value == "pass", evidence
