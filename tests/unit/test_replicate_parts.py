"""The daemon's pure parts: sum -r, page hashes, and the remote protocol over loopback."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from testbed.node.replicate import (
    FileDestination,
    RemoteDestination,
    ReplicationError,
    Replicator,
    bsd_sum,
    page_hashes,
    serve_receiver,
)


def test_bsd_sum_is_coreutils_sum_r(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "f").write_bytes(data)
    fields = subprocess.run(
        ["sum", "-r", str(tmp_path / "f")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert bsd_sum(data) == (int(fields[0]), int(fields[1]))


def test_page_hashes_change_with_one_byte() -> None:
    data = bytearray(8192)
    before = page_hashes(bytes(data))
    data[5000] = 1
    after = page_hashes(bytes(data))
    assert len(before) == 16 and before[:8] == after[:8] and before[8:] != after[8:]


def test_destination_not_writable_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ReplicationError, match="is not writable"):
        FileDestination(str(tmp_path / "missing-dir" / "dest"), 4096)


def test_remote_destination_over_loopback(tmp_path: Path) -> None:
    dest = tmp_path / "replica"
    port = 47611
    server = threading.Thread(
        target=serve_receiver, args=(f"127.0.0.1:{port}", str(dest)), daemon=True
    )
    server.start()
    remote = RemoteDestination(f"127.0.0.1:{port}", 3 * 4096)
    region = os.urandom(3 * 4096)
    for offset in range(0, len(region), 4096):
        remote.write(offset, region[offset : offset + 4096])
    remote.flush()
    assert remote.hashes() == page_hashes(region)
    assert remote.bsd_sum() == bsd_sum(region)
    remote.close()
    server.join(timeout=5)
    assert dest.read_bytes() == region


def test_unreachable_receiver_is_one_line() -> None:
    with pytest.raises(ReplicationError, match="cannot reach the receiver at 127.0.0.1:1"):
        RemoteDestination("127.0.0.1:1", 4096, connect_timeout=0.5)


def test_corrupt_final_page_makes_exactly_that_page_differ(tmp_path: Path) -> None:
    """The negative control of final-identity and sum-r: the replica's page is made to
    differ from the region's (the region itself is left alone), and a page outside the
    region is refused in one line."""
    region = os.urandom(4 * 4096)
    (tmp_path / "shm").write_bytes(region)
    dest = FileDestination(str(tmp_path / "replica"), len(region))
    for offset in range(0, len(region), 4096):
        dest.write(offset, region[offset : offset + 4096])
    replicator = Replicator("/nonexistent/qmp.sock", str(tmp_path / "shm"), dest)
    replicator._corrupt_replica(2)
    dest.flush()
    hashes, want = dest.hashes(), page_hashes(region)
    differing = [i // 8 for i in range(0, len(want), 8) if hashes[i : i + 8] != want[i : i + 8]]
    assert differing == [2]
    assert dest.bsd_sum() != bsd_sum(region)
    assert (tmp_path / "shm").read_bytes() == region
    with pytest.raises(ReplicationError, match=r"--corrupt-final-page 4 is outside the region"):
        replicator._corrupt_replica(4)
    dest.close()
