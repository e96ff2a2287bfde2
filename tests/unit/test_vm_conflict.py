"""Which guest already on a board is in a run's way (testbed.scenarios.common.vm_conflict):
the migration's guest and run all's shared-memory guest share a board; a guest with the
same name, tap, shared-memory file, disk or port does not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from testbed.protocol import VmInfo, VmSpec
from testbed.scenarios.common import vm_conflict

MIGRATION_DEST = VmSpec(
    arch="armv7",
    disk="nfs://192.168.10.10/srv/mnt/root-armv7.img",
    tap="tap0",
    mac="52:54:00:12:34:56",
    guest_ip="192.168.10.200",
    incoming="tcp:0:4321",
    paused=True,
)
SHMEM = VmSpec(arch="armv8", name="shmem", shm_path="/dev/shm/aeshmem")


def running(spec: VmSpec) -> VmInfo:
    return VmInfo(
        spec.name, 42, spec.arch, "tcg", "10.0.2", "", [], 0.0, "running", True, None, spec
    )


def test_the_shared_memory_guest_and_a_migration_share_a_board() -> None:
    assert vm_conflict(running(SHMEM), MIGRATION_DEST) is None
    assert vm_conflict(running(MIGRATION_DEST), SHMEM) is None


@pytest.mark.parametrize(
    ("theirs", "why"),
    [
        (replace(SHMEM, name="guest"), "it is named 'guest' too"),
        (VmSpec(arch="armv7", name="byhand", tap="tap0"), "it uses tap tap0"),
        (
            VmSpec(arch="armv7", name="byhand", disk=MIGRATION_DEST.disk),
            f"it runs on the disk {MIGRATION_DEST.disk}",
        ),
        (VmSpec(arch="armv7", name="byhand", incoming="tcp:0:4321"), "it listens on tcp:0:4321"),
    ],
)
def test_a_guest_in_a_migrations_way(theirs: VmSpec, why: str) -> None:
    assert vm_conflict(running(theirs), MIGRATION_DEST) == why


def test_the_seeds_by_hand_shared_memory_is_in_the_way_of_a_shmem_run() -> None:
    byhand = VmSpec(arch="armv8", tap="tap0", shm_path="/dev/shm/aeshmem")
    assert vm_conflict(running(byhand), SHMEM) == "it maps /dev/shm/aeshmem"


def test_a_gdbstub_port_is_in_the_way_only_when_this_run_uses_one() -> None:
    theirs = VmSpec(arch="armv7", name="byhand", gdb_port=1234)
    assert vm_conflict(running(theirs), MIGRATION_DEST) is None
    assert vm_conflict(running(theirs), replace(MIGRATION_DEST, gdb_port=1234)) == (
        "its gdbstub has port 1234"
    )
