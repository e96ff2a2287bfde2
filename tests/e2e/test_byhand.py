"""The seed by hand, as the README walks it: a guest on Gauss A, the destination waiting
on Gauss B, `migrate -d tcp:...` typed in the monitor, `info migrate`, the page-by-page
comparison, `cont`, the NFS server's route switched; then `testbed migrate --verify` back."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from testbed.lab.agent_client import AgentError
from testbed.lab.lab import Lab
from testbed.protocol import RamDump, RamPeek
from tests.conftest import ROOT, lab_for_module, node_processes, run_cli, suite_topology

pytestmark = pytest.mark.e2e

LAB = "tbhand"


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, built_images: dict[str, str]) -> Iterator[str]:
    yield from lab_for_module(LAB)


@pytest.fixture(autouse=True)
def no_guest_left_for_the_next_test(lab: str) -> Iterator[None]:
    """A test that fails half way may leave its guests running: they are stopped after it,
    so that its failure stays its own instead of failing the tests after it."""
    yield
    for guest in cli_json("guest", "list"):
        cli("guest", "stop", guest["node"], "--vm", guest["name"])


def cli(*args: str, timeout: float = 300) -> tuple[int, str, str]:
    words = list(args)
    at = words.index("--") if "--" in words else len(words)
    proc = run_cli(*words[:at], "--lab", LAB, *words[at:], timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def cli_json(*args: str) -> Any:
    code, out, err = cli(*args, "--json")
    assert code == 0 and out, err
    return json.loads(out)


def converse(
    verb: str,
    node: str,
    lines: list[bytes],
    until: bytes,
    timeout: float = 60,
    again: bytes | None = None,
) -> bytes:
    """``testbed console|monitor NODE`` in a real terminal: type ``lines`` once it is
    attached (then ``again`` every 2 s), return everything seen until ``until`` appears
    (or the timeout)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "testbed", verb, node, "--lab", LAB])
    seen = b""
    deadline = time.monotonic() + timeout
    sent = False
    last = 0.0
    try:
        while until not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
            if not sent and b"leave with" in seen:
                time.sleep(1)
                for line in lines:
                    os.write(fd, line + b"\r")
                    time.sleep(0.5)
                sent = True
                last = time.monotonic()
            if sent and again is not None and time.monotonic() - last > 2:
                os.write(fd, again + b"\r")
                last = time.monotonic()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    return seen


def test_the_seed_by_hand(docker_client: docker.DockerClient, lab: str) -> None:
    topo = suite_topology()
    gauss_b = topo.node("gauss-b").address
    started = cli_json("guest", "start", "gauss-a", "--arch", "armv8", "--fresh-disk")
    assert started["ready"]["root"] == "disk" and started["vm"]["status"] == "running"
    code, _, err = cli("guest", "run", "gauss-a", "--", "dirtyram 4096 256 50 &")
    assert code == 0, err
    code, out, _ = cli("guest", "run", "gauss-a", "--", "uname", "-m")
    assert code == 0 and out.strip() == "aarch64"
    assert cli("guest", "run", "gauss-a", "--", "false")[0] == 1  # the guest's exit status

    assert cli_json("guest", "start", "gauss-b", "--arch", "armv8", "--incoming")["ready"] is None
    guests = {g["node"]: g for g in cli_json("guest", "list")}
    assert guests["gauss-a"]["status"] == "running" and guests["gauss-b"]["status"] == "inmigrate"

    # the seed's own words, typed in the source's monitor
    seen = converse(
        "monitor",
        "gauss-a",
        [f"migrate -d tcp:{gauss_b}:4321".encode(), b"info migrate"],
        b"Migration status: completed",
        again=b"info migrate",
    )
    assert b"Migration status: completed" in seen, (
        seen[-1500:],
        docker_client.containers.get(f"{LAB}-gauss-a")
        .exec_run(["ps", "-eo", "pid,args"])
        .output.decode(),
    )

    # both paused at switchover (the destination runs -S): compare page by page
    memory = cli_json("compare", "gauss-a", "gauss-b")
    assert memory["differing_pages"] == [] and memory["pages_compared"] == 512 * 256

    # RAM is hashed as QEMU dumps it; pages are read from a second dump, which must be
    # the RAM that was hashed: once the guest has run, it is not (dirtyram writes on)
    node = Lab(docker_client, LAB)
    try:
        node.call("gauss-b", RamDump())
        assert b"VM status: running" in converse(
            "monitor", "gauss-b", [b"cont", b"info status"], b"VM status: running"
        )
        time.sleep(1)
        with pytest.raises(AgentError, match="changed since it was digested"):
            node.call("gauss-b", RamPeek([0]))
    finally:
        node.close()
    code, out, _ = cli("switch-route", "--via", "gauss-b", "--probe")
    assert code == 0 and "the guest answered" in out
    code, out, _ = cli("guest", "run", "gauss-b", "--", "echo", "on-b")
    assert code == 0 and out.strip() == "on-b"

    # and back, with testbed migrate: the old source must go first (its tap0 is taken)
    assert cli("guest", "stop", "gauss-a")[0] == 0
    result = cli_json("migrate", "gauss-b", "gauss-a", "--verify")
    assert result["outcome"]["status"] == "completed" and result["destination_started"]
    assert result["memory"]["differing_pages"] == []
    assert result["destination_status"] == "running"
    code, out, _ = cli("guest", "run", "gauss-a", "--", "kill %1; sleep 1; echo done")
    assert code == 0
    log = (
        docker_client.containers.get(f"{LAB}-gauss-a")
        .exec_run(["cat", "/run/testbed/vm/guest/serial.log"])
        .output.decode()
    )
    assert "dirtyram: summary" in log and "result=PASS" in log

    for node in ("gauss-a", "gauss-b"):
        assert cli("guest", "stop", node)[0] == 0
    assert cli_json("guest", "list") == []
    assert node_processes(docker_client, LAB) == {}


def test_console_is_shared_and_keys_reach_the_guest(lab: str) -> None:
    """Two people on the console and a script typing through `guest run`, at once."""
    cli_json("guest", "start", "gauss-a", "--arch", "armv8")
    try:
        out = converse("console", "gauss-a", [b"echo tb-$((40+2))"], b"tb-42")
        assert b"tb-42" in out
        code, text, _ = cli("guest", "run", "gauss-a", "--", "echo", "while-attached")
        assert code == 0 and text.strip() == "while-attached"
    finally:
        cli("guest", "stop", "gauss-a")


def test_by_hand_faults_are_one_line(lab: str) -> None:
    code, _, err = cli("migrate", "gauss-a", "gauss-b")
    assert code == 2 and err.strip() == (
        "error: no guest runs on gauss-a: start one: testbed guest start gauss-a"
    )
    code, _, err = cli("compare", "gauss-a", "gauss-b")
    assert code == 2 and "no guest runs on gauss-a" in err
    code, _, err = cli("guest", "run", "nfs", "--", "true")
    assert code == 2 and "nfs is not a board" in err
    code, _, err = cli("guest", "start", "gauss-b", "--incoming", "--arch", "armv7")
    assert code == 2 and "no root disk" in err


def test_a_guest_started_by_hand_is_in_the_runs_way(
    docker_client: docker.DockerClient, lab: str
) -> None:
    """The seed's by-hand guest with its shared memory: each run refuses, with one line,
    before it starts anything, and the guest runs on untouched."""
    cli_json("guest", "start", "gauss-a", "--arch", "armv8", "--shm", "1M")
    try:
        before = node_processes(docker_client, LAB)
        way = "error: gauss-a already runs a guest in this run's way (guest, started by hand or "
        for run in (["run", "migration"], ["run", "shmem"], ["run", "all"]):
            code, _, err = cli(*run)
            lines = err.strip().splitlines()
            assert code == 2 and lines[-1].startswith(way), err
            assert "it is named 'guest' too" in lines[-1] or "maps /dev/shm/aeshmem" in lines[-1]
        code, _, err = cli("run", "all", "--json")
        assert code == 2 and "Traceback" not in err
        assert node_processes(docker_client, LAB) == before
        # a guest of another name is another guest
        code, text, _ = cli("guest", "stop", "gauss-a", "--vm", "shmem")
        assert code == 0 and text.strip() == "gauss-a: no guest 'shmem' runs"
        assert [vm["name"] for vm in cli_json("guest", "list")] == ["guest"]
        code, text, _ = cli("guest", "run", "gauss-a", "--vm", "guest", "--", "echo", "untouched")
        assert code == 0 and text.strip() == "untouched"
    finally:
        cli("guest", "stop", "gauss-a")


def test_run_all_keeps_the_last_guest_of_each_track(
    docker_client: docker.DockerClient, lab: str
) -> None:
    """`run all --keep`: the two tracks side by side to their verdicts, then the lab and
    each track's last guest left running (an earlier one would be in the next run's way),
    each reachable by its name."""
    code, out, err = cli(
        "run", "all", "--keep", "--mem", "256", "--load", "seed:4096:256:50",
        "--duration", "3", "--json",
    )  # fmt: skip
    assert code == 0 and out, err
    result = json.loads(out)
    assert [(r["scenario"], r["arch"]) for r in result["results"]] == [
        ("migration", "armv7"),
        ("migration", "armv8"),
        ("shmem", "armv7"),
        ("shmem", "armv8"),
    ]
    assert "[migration armv7]" in err and "[shmem armv8]" in err
    try:
        kept = sorted((vm["node"], vm["name"], vm["arch"]) for vm in cli_json("guest", "list"))
        assert kept == [("gauss-a", "shmem", "armv8"), ("gauss-b", "guest", "armv8")]
        code, text, _ = cli("guest", "run", "gauss-a", "--vm", "shmem", "--", "uname", "-m")
        assert code == 0 and text.strip() == "aarch64"
    finally:
        cli("guest", "stop", "gauss-a", "--vm", "shmem")
        cli("guest", "stop", "gauss-b")
    assert node_processes(docker_client, LAB) == {}
