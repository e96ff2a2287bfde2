"""Seed procedure 1 end to end: real lab, real QEMU, real guests (TCG here).

Every check of the verdict passes on a clean run, and each is made to fail for real by a
negative control (--inject) that alters what it observes.  Faults in the lab during a run:
test_migration_faults.py."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from testbed import labels, topology
from tests.conftest import SUITE_TOPOLOGY, lab_for_module, run_cli

pytestmark = pytest.mark.e2e

LAB = "tbmig"
ALL_CHECKS = {
    "migration-completed",
    "ram-pages",
    "unreachable-before-switch",
    "reachable-after-switch",
    "load-stale",
    "writeout-gap",
    "loads-final",
    "e2fsck",
}


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, built_images: dict[str, str]) -> Iterator[str]:
    yield from lab_for_module(LAB)


def run_migration(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = run_cli("run", "migration", "--lab", LAB, "--json", *args, timeout=900)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def failing(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for check in result["checks"]:
        if check["outcome"] == "fail":
            out.setdefault(check["check"], []).append(check)
    return out


@pytest.mark.parametrize(
    ("arch", "round_trips"), [("armv7", 1), ("armv8", 0)], ids=["armv7-a-b-a", "armv8-a-b"]
)
def test_migration_passes_with_every_check(
    docker_client: docker.DockerClient,
    built_images: dict[str, str],
    lab: str,
    arch: str,
    round_trips: int,
    tmp_path: Path,
) -> None:
    """The seed's procedure passes every check; armv7 goes on back to Gauss A (a round
    trip), and every migration of it is checked as the first is."""
    args = ["--arch", arch, "--report", str(tmp_path)]
    if round_trips:
        args += ["--round-trips", str(round_trips)]
    code, result, stderr = run_migration(*args)
    assert code == 0 and result["verdict"] == "pass", (result["failures"], stderr[-2000:])
    assert {c["check"] for c in result["checks"]} == ALL_CHECKS
    assert all(c["outcome"] == "pass" for c in result["checks"])
    label = docker_client.images.get(built_images["board"]).labels[labels.QEMU_VERSION]
    assert result["qemu_version"] == label and result["arch"] == arch
    assert result["boot"]["root"] == "disk"  # the guest runs from the NFS disk
    hops = [(hop["source"], hop["destination"]) for hop in result["migrations"]]
    there_and_back = [("gauss-a", "gauss-b"), ("gauss-b", "gauss-a")]
    assert hops == (there_and_back * round_trips or [("gauss-a", "gauss-b")])
    for hop in result["migrations"]:
        assert hop["verdict"] == "pass", hop["failures"]
        m = hop["migration"]
        assert m["status"] == "completed" and m["total_ms"] > 0 and m["downtime_ms"] >= 0
        assert m["transferred_bytes"] > 64 << 20 and m["dirty_sync_count"] >= 2
        assert m["switchover_at"] is not None and m["switchover_at"] >= m["started_at"]
        assert hop["iterations"] and hop["iterations"][-1]["pass_no"] == m["dirty_sync_count"]
        memory = hop["memory"]
        assert memory["pages_compared"] == 512 * 256 and memory["differing_pages"] == []
        load = hop["loads"][0]
        assert load["ident"] == "dirtyram" and load["stale_after"] == load["stale_before"] == 0
        assert load["passes_after"] >= load["passes_before"] + 2
        net = hop["network"]
        assert net["reachable_before_switch"] is False  # the seed's observation
        assert net["reachable_after_switch"] is True
        # the outage is timed from QEMU's RESUME event, the switch right after it
        assert 0 < net["switch_to_reply_ms"] <= net["outage_ms"]
    assert result["disk"]["fsck_exit"] == 0
    assert result["final_loads"] == [{"ident": "dirtyram", "result": "PASS", "stale": 0}]
    assert "removed 3 container(s)" not in result["cleanup"]  # the module's lab stays up
    files = {p.name for p in (tmp_path / f"migration-{arch}").iterdir()}
    last = hops[-1][1]
    assert {
        "index.html",
        "summary.md",
        "results.json",
        f"migration-{arch}.json",
        f"console-final-{last}.log",
    } <= files


def test_negative_controls_make_each_check_fail_for_real(lab: str) -> None:
    """One run, five faults, five checks that must fail with their evidence, and no other
    check failing."""
    code, result, _ = run_migration(
        "--arch",
        "armv8",
        "--inject",
        "corrupt-page=131000",
        "--inject",
        "stale-load-page",
        "--inject",
        "time-jump=40",
        "--inject",
        "no-route-switch",
        "--inject",
        "corrupt-disk",
    )
    assert code == 1 and result["verdict"] == "fail"
    fails = failing(result)
    assert set(fails) == {
        "ram-pages",
        "load-stale",
        "writeout-gap",
        "reachable-after-switch",
        "e2fsck",
        "loads-final",
    }, result["failures"]
    ram = fails["ram-pages"][0]["evidence"]
    assert 131000 in ram["differing_pages"] and len(ram["differing_pages"]) == 2
    stale_page = [p for p in ram["differing_pages"] if p != 131000][0]
    hop = result["migrations"][0]
    details = {d["page"]: d for d in hop["memory"]["details"]}
    assert details[131000]["guest_physical"] == hex(0x40000000 + 131000 * 4096)
    assert details[stale_page]["source_stamp"].startswith("seed page=")
    assert details[stale_page]["destination_stamp"].startswith("seed page=")
    assert details[stale_page]["source_stamp"] != details[stale_page]["destination_stamp"]
    assert "stale page(s) on gauss-b" in fails["load-stale"][0]["summary"]
    # the jump is typed on the destination's console once it runs: it lands before its first
    # time line (the gap) or, when a line comes first, between two of its lines (a step)
    writeout = fails["writeout-gap"][0]["evidence"]
    assert max(writeout["gap_seconds"], writeout.get("largest_step") or 0) >= 40, writeout
    assert "route was not switched" in fails["reachable-after-switch"][0]["summary"]
    assert "e2fsck -fn exit 4" in fails["e2fsck"][0]["summary"]


def test_split_brain_is_caught_by_the_old_route(lab: str) -> None:
    code, result, _ = run_migration("--arch", "armv8", "--inject", "split-brain")
    assert code == 1
    fails = failing(result)
    assert "unreachable-before-switch" in fails, result["failures"]
    assert "split brain" in fails["unreachable-before-switch"][0]["summary"]
    assert fails["unreachable-before-switch"][0]["evidence"]["old_route_replies"] > 0


def test_hold_keeps_the_migration_iterating(lab: str) -> None:
    """With the hold (downtime-limit 1 ms, 100 MiB/s) the seed's load keeps QEMU iterating
    round after round; the figures say how long and how many (QEMU may still converge
    before the hold ends, when a round finds almost nothing dirty: held_seconds says so)."""
    code, result, _ = run_migration("--arch", "armv8", "--hold", "2")
    assert code == 0, result["failures"]
    m = result["migrations"][0]["migration"]
    # the seed's load dirties 40 MB/s: no round fits 1 ms at 100 MiB/s, so it holds throughout
    assert m["held_seconds"] >= 1.9 and m["syncs_while_holding"] >= 3, m
    assert m["dirty_sync_count"] >= m["syncs_while_holding"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pages", "100", "--burst", "200"], "burst"),
        (["--mem", "4096"], "--mem 4096 is out of range for armv7"),
        (["--pages", "200000", "--mem", "512"], "512"),
        (["--corrupt-page", "999999"], "--corrupt-page 999999 is outside the guest's RAM"),
        (["--bandwidth", "fast"], "--bandwidth: bad rate 'fast'"),
        (["--load", "hot:abc"], "--load hot:abc"),
        (["--inject", "meteor"], "--inject meteor: unknown fault 'meteor'"),
        (["--hold", "-1"], "--hold -1 is out of range"),
        (["--report", "/proc/nope"], "--report /proc/nope"),
        (["--topology", "tests/fixtures/topologies/not-utf8.toml"], "not UTF-8"),
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
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_lab_that_cannot_be_brought_up_is_one_line(docker_client: docker.DockerClient) -> None:
    proc = run_cli(
        "run",
        "migration",
        "--lab",
        "tbnoimg",
        "--topology",
        SUITE_TOPOLOGY,
        env={"TESTBED_IMAGE_PREFIX": "testbed-absent"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "image testbed-absent/qemu-arm:bookworm-backports is missing" in lines[0]
        and "testbed images build" in lines[0]
    ), proc.stderr


def test_topology_of_the_suite_is_not_the_seed_subnet() -> None:
    subnet = ipaddress.ip_network(topology.load(SUITE_TOPOLOGY).network.subnet)
    assert subnet.subnet_of(ipaddress.ip_network("10.210.0.0/16"))
    assert not subnet.overlaps(ipaddress.ip_network(topology.load(None).network.subnet))


EVERY_MODE = ["seed", "hot:256", "random:1024", "wide:4096"]


def test_each_load_detects_a_stale_page(lab: str) -> None:
    """The negative control of every load mode, in one run: one page of each load gets an
    older stamp on the paused destination (through the gdbstub); each load itself must
    report its own page stale, and only its own."""
    loads = [arg for load in EVERY_MODE for arg in ("--load", load)]
    code, result, _ = run_migration("--arch", "armv8", *loads, "--inject", "stale-load-page")
    assert code == 1
    fails = failing(result)
    assert set(fails) == {"load-stale", "ram-pages", "loads-final"}, result["failures"]
    stale = {c["evidence"]["mode"]: c["evidence"]["stale_pages"] for c in fails["load-stale"]}
    assert set(stale) == {load.split(":")[0] for load in EVERY_MODE}, fails["load-stale"]
    details = result["migrations"][0]["memory"]["details"]
    assert len(details) == len(EVERY_MODE)  # one page altered per load, nothing else
    for diff in details:
        mode, index = diff["source_stamp"].split()[0], diff["source_stamp"].split()[1]
        assert diff["destination_stamp"].startswith(f"{mode} page=")
        # the load names the very page that was altered, and no other
        assert set(stale[mode]) == {index.split("=")[1]}, (diff, stale)
