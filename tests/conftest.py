"""Shared fixtures.  Integration tests use the real Docker engine and the real images."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from testbed import images, labels
from testbed.errors import UserError
from testbed.topology import Topology

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "tests" / "fixtures" / "topologies"


# ``-n auto`` (pyproject's addopts): one worker per core and one more, at most this many.
# The end-to-end tests wait on their guests part of the time (boots from NFS, probes, a
# paused NFS server, a cut link); with two workers on two cores a fifth of the CPU stayed
# idle, and the third worker fills it (README, "Figures").  Each worker's lab may hold two
# 512 MiB guests and a shared-memory one.
MAX_WORKERS = 4

# The modules that take longest (pytest --durations: 25 to 120 s each with three workers
# on two cores), longest first.  pytest-xdist hands out whole modules (--dist
# loadfile) in the order they are collected (--no-loadscope-reorder); a long module handed
# out last would end the run alone, so these go first and the short ones fill in after.
LONGEST_MODULES = (
    "tests/e2e/test_interrupt.py",
    "tests/e2e/test_migration_faults.py",
    "tests/e2e/test_shmem.py",
    "tests/e2e/test_migration.py",
    "tests/e2e/test_byhand.py",
    "tests/e2e/test_shmem_faults.py",
    "tests/integration/test_lab.py",
    "tests/integration/test_boot.py",
)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """pytest-xdist's hook for ``-n auto``: the number of workers."""
    return max(1, min((os.cpu_count() or 1) + 1, MAX_WORKERS))


def longest_first(items: list[pytest.Item]) -> None:
    """Sort ``items`` in place: LONGEST_MODULES' first, in that order, then the rest as
    collected."""
    rank = {module: n for n, module in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # in the workers, which collect for pytest-xdist's scheduler; a run in one process
    # (-n 0, for -s or --pdb) keeps the collection's order, unit tests first
    if os.environ.get("PYTEST_XDIST_WORKER"):
        longest_first(items)


def xdist_worker() -> int:
    """N in pytest-xdist's worker gwN; 0 in a run without workers (``-n 0``)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") else 0


def worker_topology(fixture: str, octet: int) -> str:
    """The fixture topology on 10.210.OCTET.0/24 for worker 0 and a plain run; worker N's
    copy on 10.210.(OCTET + 2N).0/24, so that the labs of parallel workers never share a
    subnet (each test module, with its lab, runs on one worker: --dist loadfile)."""
    path = TOPOLOGIES / fixture
    worker = xdist_worker()
    if worker == 0:
        return str(path)
    moved = path.read_text().replace(f"10.210.{octet}.", f"10.210.{octet + 2 * worker}.")
    copy = ROOT / "build" / "tests" / f"{path.stem}-gw{worker}.toml"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(moved)
    return str(copy)


# The suite's labs use their own names and subnets (10.210.10.0/24 and 10.210.11.0/24): a
# user's lab on the seed's 192.168.10.0/24 is never touched, so the README's two commands
# can run in either order with or without a lab up.
SUITE_TOPOLOGY = worker_topology("suite.toml", 10)
SECOND_TOPOLOGY = worker_topology("suite-b.toml", 11)


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The real command line, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    from testbed.docker_client import connect

    try:
        return connect()
    except UserError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="session")
def built_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """Builds (or, with a warm cache, re-validates) the images through the product's own
    build code.  Returns {"board": tag, "nfs": tag}."""
    lock = ROOT / "build" / "tests" / "images.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # parallel workers: one builds, the others wait
        images.ensure_base_image(docker_client)
        board, nfs = images.build_all(docker_client, images.DEFAULT_SUITE)
    return {"board": board.tag, "nfs": nfs.tag}


def default_sigint() -> None:
    """``preexec_fn`` of a child that must answer SIGINT: a test runner started in the
    background by a script has SIGINT ignored, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def lab_for_module(name: str) -> Iterator[str]:
    """A lab for one test module, up on the suite's subnet: nothing of it before, nothing
    of it after."""
    run_cli("down", "--lab", name)
    up = run_cli("up", "--lab", name, "--topology", SUITE_TOPOLOGY)
    assert up.returncode == 0, up.stderr
    yield name
    run_cli("down", "--lab", name)


def suite_topology() -> Topology:
    from testbed import topology

    return topology.load(SUITE_TOPOLOGY)


def node_processes(client: docker.DockerClient, lab: str) -> dict[str, list[str]]:
    """QEMU, replication daemons and receivers still running in each container of a lab
    (read with ps, independently of the agent)."""
    found: dict[str, list[str]] = {}
    for container in client.containers.list(
        filters=labels.project_filter(**{labels.LAB: lab}), ignore_removed=True
    ):
        code, out = container.exec_run(["ps", "-eo", "args"])
        if code != 0:
            continue
        left = [
            line
            for line in out.decode().splitlines()
            if "qemu-system" in line
            or "testbed.node replicate" in line
            or "testbed.node receive" in line
        ]
        if left:
            found[container.name or "?"] = left
    return found


def labelled_containers(client: docker.DockerClient, **match: str) -> list[str]:
    return [
        c.name or ""
        for c in client.containers.list(
            # a container removed between the engine's list and its inspect is no leak
            all=True,
            filters=labels.project_filter(**match),
            ignore_removed=True,
        )
    ]


def labelled_objects(client: docker.DockerClient, **match: str) -> list[str]:
    """The names of the testbed's containers, networks and volumes with these labels."""
    filters = labels.project_filter(**match)
    return (
        labelled_containers(client, **match)
        + [n.name or "" for n in client.networks.list(filters=filters)]
        + [v.name or "" for v in client.volumes.list(filters=filters)]
    )


def lab_objects(client: docker.DockerClient, lab: str) -> list[str]:
    """The names of one lab's containers, networks and volumes."""
    return labelled_objects(client, **{labels.LAB: lab})


@pytest.fixture()
def no_leaks(docker_client: docker.DockerClient, request: pytest.FixtureRequest) -> Iterator[None]:
    """The test must leave no testbed container, network or volume of the kinds its module
    makes behind (the module's NO_LEAKS_OF: one set of labels to match per kind).  Only
    those: a lab of the user's may be up meanwhile, and beside other xdist workers their
    commands create and remove objects of their own."""
    yield
    left = [
        name
        for match in request.module.NO_LEAKS_OF
        for name in labelled_objects(docker_client, **match)
    ]
    assert not left, f"left behind: {left}"
