"""Ctrl-C anywhere: the command stops every QEMU, daemon and helper it started, leaves the
lab as it found it, and says so truthfully.  Each scenario is interrupted at ten points
in time (from the lab coming up to the final checks), in a lab that was up before; and
twice in a lab that the command itself created, which must then be gone entirely."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from tests.conftest import (
    ROOT,
    SECOND_TOPOLOGY,
    default_sigint,
    lab_for_module,
    lab_objects,
    node_processes,
    run_cli,
)

pytestmark = pytest.mark.e2e

LAB = "tbint"
OWN_LAB = "tbintown"
MIGRATION = ["run", "migration", "--arch", "armv8", "--mem", "256", "--load", "seed:4096:256:50"]
SHMEM = ["run", "shmem", "--arch", "armv8", "--duration", "6", "--remote"]
# Ten Ctrl-C points per scenario, each tied to a phase: (a line of the command's standard
# error, or None for its start; seconds after it).  A busy machine slows every phase, so
# wall-clock points would drift; these land in the same phase whatever the load.
POINTS = {
    "migration": [
        ("lab-check", None, 0.7),  # the command starts, checks the lab
        ("root-disk", f"lab {LAB}: up", 0.0),  # the pristine root disk onto the export
        ("source-launch", "pristine root disk", 0.0),  # the source QEMU launches
        ("boot", "source QEMU on gauss-a", 1.0),  # the guest boots
        ("loads", "guest ready", 0.0),  # the loads start, their first passes
        ("destination", "destination QEMU on gauss-b", 0.0),  # the migration starts
        ("migrating", "migrate tcp:", 0.0),  # QEMU migrates
        ("checks", "completed in", 0.0),  # RAM compared, destination resumed, route switched
        ("loads-stop", "page(s) differ", 0.0),  # the loads stop, the guest powers off
        ("e2fsck", "stopping the loads", 0.3),  # power-off, e2fsck
    ],
    "shmem": [
        ("lab-check", None, 0.7),  # the command starts, checks the lab
        ("launch", f"lab {LAB}: up", 0.0),  # the VM launches
        ("boot", "QEMU on gauss-a", 0.5),  # the guest boots
        ("receiver", "guest ready", 0.0),  # the receiver on gauss-b starts
        ("pre-copy", "receiver on gauss-b", 0.0),  # the daemon pre-copies
        ("program", "replication daemon on gauss-a", 0.0),  # the guest program starts
        ("replicating", "guest: tstaeshm", 1.0),  # replication, checkpoints
        ("replicating-late", "guest: tstaeshm", 4.0),  # near the program's end
        ("last-round", "the guest program stopped", 0.0),  # the daemon's last round
        ("final-checks", "the guest program stopped", 1.0),  # final checks, guest checksum
    ],
}


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, built_images: dict[str, str]) -> Iterator[str]:
    yield from lab_for_module(LAB)


def _start(args: list[str]) -> subprocess.Popen[str]:
    """The command, its standard error piped (the step lines the Ctrl-C points wait for)."""
    return subprocess.Popen(
        [sys.executable, "-m", "testbed", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        env={**os.environ, "COLUMNS": "200"},
    )


def check_interrupted(code: int | None, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("interrupted")]
    assert code == 130 and len(lines) == 1, (code, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    return lines[0]


def interrupt_at(
    args: list[str], markers: str | tuple[str, ...] | None, delay: float
) -> tuple[int | None, str, float]:
    """Run the command; ``delay`` seconds after every one of ``markers`` has appeared on
    its standard error (after its start, for None) send SIGINT.  Return (exit code,
    standard error, seconds from the signal to the exit); the exit code is None when the
    command ended first (no signal is sent then)."""
    wanted = {markers} if isinstance(markers, str) else set(markers or ())
    proc = _start(args)
    assert proc.stderr is not None
    seen: list[str] = []
    if wanted:
        for line in proc.stderr:
            seen.append(line)
            wanted = {marker for marker in wanted if marker not in line}
            if not wanted:
                break
        else:
            proc.wait(timeout=180)
            return None, "".join(seen), 0.0
    time.sleep(delay)
    if proc.poll() is not None:
        return None, "".join(seen) + proc.stderr.read(), 0.0
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait(timeout=180)
    return proc.returncode, "".join(seen) + rest, time.monotonic() - sent


@pytest.mark.parametrize(
    ("scenario", "marker", "delay"),
    [
        pytest.param(scenario, marker, delay, id=f"{scenario}-{n:02d}-{phase}")
        for scenario, points in POINTS.items()
        for n, (phase, marker, delay) in enumerate(points, 1)
    ],
)
def test_ctrl_c_leaves_the_lab_as_it_was(
    docker_client: docker.DockerClient,
    lab: str,
    scenario: str,
    marker: str | None,
    delay: float,
) -> None:
    before = sorted(lab_objects(docker_client, LAB))
    args = [*(MIGRATION if scenario == "migration" else SHMEM), "--lab", LAB]
    code, err, seconds = interrupt_at(args, marker, delay)
    if code is None:  # it had ended before the signal: not an interruption point
        assert marker is not None and marker in err, err[-2000:]  # but it got that far
        pytest.skip(f"{scenario} ended within {delay:g} s of {marker!r}")
    message = check_interrupted(code, err)
    assert node_processes(docker_client, LAB) == {}, message
    assert sorted(lab_objects(docker_client, LAB)) == before  # the lab stays as it was
    assert "of the lab this run created" not in message
    assert run_cli("status", "--lab", LAB).returncode == 0
    assert seconds < 60, f"{seconds:.1f} s from the Ctrl-C to the exit:\n{err[-3000:]}"


def interrupt_when_created(docker_client: docker.DockerClient, args: list[str]) -> tuple[int, str]:
    """Run the command, send SIGINT as soon as the first object of its lab (the network)
    exists, return (exit code, standard error).  A fixed delay cannot say that: on a busy
    machine the command may not have started creating anything after a second."""
    proc = _start(args)
    deadline = time.monotonic() + 60
    while not lab_objects(docker_client, OWN_LAB) and proc.poll() is None:
        assert time.monotonic() < deadline, "the command created nothing of its lab in 60 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    return proc.returncode, err


@pytest.mark.parametrize("moment", ["lab-created", "guest-boots"])
def test_ctrl_c_removes_the_lab_the_command_created(
    docker_client: docker.DockerClient, built_images: dict[str, str], moment: str
) -> None:
    run_cli("down", "--lab", OWN_LAB)
    args = [*MIGRATION, "--lab", OWN_LAB, "--topology", SECOND_TOPOLOGY]
    if moment == "lab-created":  # while the lab comes up: part of it exists
        code, err = interrupt_when_created(docker_client, args)
    else:
        code, err = interrupt_after_line(args, "source QEMU on gauss-a", 1.0)
    message = check_interrupted(code, err)
    assert lab_objects(docker_client, OWN_LAB) == [], message
    # what it says it removed is what it had created by then (as much as the moment allows)
    containers = "3" if moment == "guest-boots" else r"\d"
    assert re.search(
        rf"removed {containers} container\(s\), 1 network\(s\), [01] volume\(s\) of the lab "
        r"this run created",
        message,
    ), message
    if moment == "guest-boots":
        assert "stopped QEMU 'guest' on gauss-a" in message, message
    run_cli("down", "--lab", OWN_LAB)


@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_a_session_that_ends_while_its_vm_launches_leaves_no_qemu(
    docker_client: docker.DockerClient, lab: str, delay: float
) -> None:
    """Ctrl-C lands while a QEMU starts: the host's goodbye reaches the agent while the
    VmStart request is still in flight.  The VM must be stopped, and counted as stopped."""
    from testbed.lab.agent_client import AgentError
    from testbed.lab.lab import Lab
    from testbed.protocol import Goodbye, Run, VmSpec, VmStart

    lab_obj = Lab(docker_client, LAB)
    try:
        assert lab_obj.call("gauss-a", Run(["true"])).code == 0  # the session exists
        with ThreadPoolExecutor(1) as pool:
            start = pool.submit(lab_obj.call, "gauss-a", VmStart(VmSpec(arch="armv8", accel="tcg")))
            time.sleep(delay)
            ended = lab_obj.call("gauss-a", Goodbye(), timeout=90)
            try:
                start.result(timeout=90)  # the launch finished before the goodbye
            except AgentError as exc:
                assert "the session ended while VM 'guest' started" in str(exc)
        assert ended.stopped_vms == ["guest"]
        assert node_processes(docker_client, LAB) == {}
    finally:
        lab_obj.close()


# `run all` holds one lab for its four runs, two at a time: Ctrl-C while both tracks run
RUN_ALL = ["run", "all", "--mem", "256", "--load", "seed:4096:256:50", "--duration", "3"]


def interrupt_after_line(
    args: list[str], markers: str | tuple[str, ...], delay: float
) -> tuple[int, str]:
    """interrupt_at, for a command that must still run when the signal goes: (exit code,
    standard error)."""
    code, err, _ = interrupt_at(args, markers, delay)
    assert code is not None, f"the command ended before the signal ({markers}): {err[-2000:]}"
    return code, err


def test_ctrl_c_in_run_all_stops_both_tracks_and_removes_the_lab_it_created(
    docker_client: docker.DockerClient, built_images: dict[str, str]
) -> None:
    run_cli("down", "--lab", OWN_LAB)
    args = [*RUN_ALL, "--lab", OWN_LAB, "--topology", SECOND_TOPOLOGY]
    # the shared-memory guest's program runs; the migration's guest (slower: its root is
    # on NFS) still boots
    code, err = interrupt_after_line(
        args, ("[shmem armv7] guest: tstaeshm", "[migration armv7] source QEMU on gauss-a"), 1.0
    )
    message = check_interrupted(code, err)
    # each run in progress stopped what it started; then the lab went, as one line
    assert "stopped QEMU 'guest' on gauss-a" in message, message
    assert "stopped QEMU 'shmem' on gauss-a, replicate on gauss-a" in message, message
    assert node_processes(docker_client, OWN_LAB) == {}
    assert lab_objects(docker_client, OWN_LAB) == [], message
    assert re.search(
        r"; removed 3 container\(s\), 1 network\(s\), 1 volume\(s\) of the lab this run created$",
        message,
    ), message
    assert "armv8" not in err  # neither track started its next run
    run_cli("down", "--lab", OWN_LAB)


def test_ctrl_c_in_run_all_leaves_a_lab_that_was_up_as_it_was(
    docker_client: docker.DockerClient, lab: str
) -> None:
    before = sorted(lab_objects(docker_client, LAB))
    # the second migration boots, beside the second shared-memory run or after it
    code, err = interrupt_after_line([*RUN_ALL, "--lab", LAB], "[migration armv8]", 3.0)
    message = check_interrupted(code, err)
    assert node_processes(docker_client, LAB) == {}, message
    assert sorted(lab_objects(docker_client, LAB)) == before
    assert "of the lab this run created" not in message
