"""The replication daemon: keeps a copy of a QEMU shared-memory device in sync from
QEMU's own dirty log (stock QEMU, no patch).

The seed's daemon asked a patched QEMU for a dirty bitmap.  Stock QEMU exposes its dirty
log as the migration stream, so the daemon migrates the VM into itself, over and over:

1. pre-copy: the whole region into the destination;
2. an *epoch*: ``migrate`` into a unix socket the daemon listens on, with downtime-limit
   1 ms so that QEMU keeps iterating while the guest writes; every page record of the
   block whose idstr ends in ``/shm`` is written at its offset into the destination;
3. a *checkpoint*: when the migration converges (QEMU has paused the VM), destination and
   region are compared byte for byte, the differing pages listed; then ``cont``;
4. when the guest program stops (SIGUSR1, or no write for ``--until-quiet`` seconds), a
   last epoch converges, is checked, the VM resumes and the daemon exits 0.

The destination is a local file, or (``--remote``) a receiver on another node
(``python3 -m testbed.node receive``).  ``--drop-every N`` drops every Nth page on
purpose: the negative control, whose checkpoints must list the dropped pages;
``--corrupt-final-page P`` alters page P of the replica just before the final checkpoint:
the negative control of the final identity and ``sum -r``."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from qemu.qmp.legacy import QEMUMonitorProtocol

from testbed import codec
from testbed.node.migration import capability_settings
from testbed.node.replica_diff import MAX_PAGE_DIFFS, PAGE, ReplicaPageDiff, page_diff
from testbed.node.stream import MigrationStreamParser, StreamError
from testbed.wait import WaitTimeout, wait_until

LOG = logging.getLogger(__name__)

HASH_BYTES = 8
GREETING_TIMEOUT = 5.0
ITERATE_DOWNTIME_MS = 1  # keep iterating (0 is refused by QEMU 7.2)
CONVERGE_DOWNTIME_MS = 300
# Low enough that a hot 1 MiB region never fits the 1 ms downtime, high enough that the
# first (bulk) pass over guest RAM, mostly zero pages, is quick.
ITERATE_BANDWIDTH = 256 << 20


class ReplicationError(Exception):
    pass


def bsd_sum(data: bytes) -> tuple[int, int]:
    """``sum -r``: the BSD 16-bit rotating checksum and the size in 1 KiB blocks."""
    checksum = 0
    for byte in data:
        checksum = ((checksum >> 1) + ((checksum & 1) << 15) + byte) & 0xFFFF
    return checksum, (len(data) + 1023) // 1024


def page_hashes(data: bytes) -> bytes:
    return b"".join(
        hashlib.blake2b(data[i : i + PAGE], digest_size=HASH_BYTES).digest()
        for i in range(0, len(data), PAGE)
    )


# -- destinations ------------------------------------------------------------------------------
class Destination(Protocol):
    def write(self, offset: int, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def hashes(self) -> bytes: ...
    def bsd_sum(self) -> tuple[int, int]: ...
    def describe(self) -> str: ...
    def close(self) -> None: ...


class FileDestination:
    def __init__(self, path: str, size: int) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ReplicationError(f"destination {path} is not writable: {exc.strerror}") from None
        os.ftruncate(self.fd, size)
        self.size = size

    def write(self, offset: int, data: bytes) -> None:
        os.pwrite(self.fd, data, offset)

    def flush(self) -> None:
        os.fsync(self.fd)

    def read_all(self) -> bytes:
        return os.pread(self.fd, self.size, 0)

    def hashes(self) -> bytes:
        return page_hashes(self.read_all())

    def bsd_sum(self) -> tuple[int, int]:
        return bsd_sum(self.read_all())

    def describe(self) -> str:
        return self.path

    def close(self) -> None:
        os.close(self.fd)


# Remote protocol: 1-byte op, then fields.  W: be64 offset, be32 len, data.  H: reply
# be32 len + page hashes.  S: reply be32 checksum, be32 blocks.  F: flush, reply b"K".
class RemoteDestination:
    def __init__(self, address: str, size: int, connect_timeout: float = 10.0) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        tried = ["nothing yet"]

        def connected() -> socket.socket | None:
            try:
                return socket.create_connection((host, int(port)), timeout=30)
            except ValueError as exc:
                raise ReplicationError(f"bad receiver address {address}: {exc}") from None
            except OSError as exc:
                tried[0] = str(exc)
                return None

        try:
            self.sock = wait_until(
                connected,
                what=f"receiver at {address}",
                timeout=connect_timeout,
                last=lambda: tried[0],
                interval=0.2,
            )
        except WaitTimeout as exc:
            raise ReplicationError(
                f"cannot reach the receiver at {address} within {connect_timeout:.0f} s: {exc.last}"
            ) from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.out = self.sock.makefile("wb", buffering=1 << 20)
        self.inp = self.sock.makefile("rb")
        self.out.write(b"I" + struct.pack(">Q", size))
        self.out.flush()

    def write(self, offset: int, data: bytes) -> None:
        self.out.write(b"W" + struct.pack(">QI", offset, len(data)) + data)

    def _ask(self, op: bytes) -> BinaryIO:
        self.out.write(op)
        self.out.flush()
        return self.inp

    def flush(self) -> None:
        if self._ask(b"F").read(1) != b"K":
            raise ReplicationError("the receiver did not confirm a flush")

    def hashes(self) -> bytes:
        inp = self._ask(b"H")
        (length,) = struct.unpack(">I", inp.read(4))
        return bytes(inp.read(length))

    def bsd_sum(self) -> tuple[int, int]:
        checksum, blocks = struct.unpack(">II", self._ask(b"S").read(8))
        return int(checksum), int(blocks)

    def describe(self) -> str:
        return f"receiver {self.address}"

    def close(self) -> None:
        try:
            self.out.write(b"Q")
            self.out.flush()
        except OSError:
            pass
        self.sock.close()


@dataclass(frozen=True)
class ReceiverResult:
    dest: str
    writes: int


def serve_receiver(listen: str, dest_path: str, once: bool = True) -> ReceiverResult:
    """``receive``: write what a daemon sends into ``dest_path``."""
    host, _, port = listen.rpartition(":")
    server = socket.create_server((host or "0.0.0.0", int(port)), reuse_port=False)
    served = 0
    try:
        while True:
            conn, peer = server.accept()
            LOG.info("daemon connected from %s", peer)
            with conn:
                inp = conn.makefile("rb", buffering=1 << 20)
                out = conn.makefile("wb")
                dest: FileDestination | None = None
                while op := inp.read(1):
                    if op == b"I":
                        (size,) = struct.unpack(">Q", inp.read(8))
                        dest = FileDestination(dest_path, size)
                        continue
                    if dest is None:
                        raise ReplicationError("protocol: no I(nit) before data")
                    if op == b"W":
                        offset, length = struct.unpack(">QI", inp.read(12))
                        dest.write(offset, inp.read(length))
                        served += 1
                    elif op == b"F":
                        dest.flush()
                        out.write(b"K")
                        out.flush()
                    elif op == b"H":
                        hashes = dest.hashes()
                        out.write(struct.pack(">I", len(hashes)) + hashes)
                        out.flush()
                    elif op == b"S":
                        out.write(struct.pack(">II", *dest.bsd_sum()))
                        out.flush()
                    elif op == b"Q":
                        break
                    else:
                        raise ReplicationError(f"protocol: unknown op {op!r}")
                if dest is not None:
                    dest.close()
            if once:
                return ReceiverResult(dest_path, served)
    finally:
        server.close()


# -- the daemon --------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    epoch: int
    final: bool
    exact: bool
    differing_pages: list[int]
    sum_r_src: str
    sum_r_dest: str
    vm_status: str
    # the epoch's pages: as QEMU counted them (query-migrate: normal + duplicate) and as the
    # daemon read them from the stream; equal unless the daemon missed part of the stream
    qemu_pages: int | None = None
    stream_pages: int = 0
    page_diffs: list[ReplicaPageDiff] = field(default_factory=list)  # the first MAX_PAGE_DIFFS


@dataclass
class EpochStats:
    epoch: int
    sections: int = 0
    stream_pages: int = 0
    shm_pages: int = 0
    dropped: list[int] = field(default_factory=list)
    dirty_sync_count: int = 0
    seconds: float = 0.0
    stream_bytes: int = 0
    qemu_pages: int | None = None  # query-migrate's ram normal + duplicate, when it says


@dataclass
class ReplicationReport:
    qemu_version: str
    block: str = ""
    region_bytes: int = 0
    destination: str = ""
    precopy_pages: int = 0
    epochs: int = 0
    rounds: int = 0  # QEMU dirty-bitmap syncs, over all epochs
    shm_pages: int = 0  # pages of the region taken from the stream
    stream_pages: int = 0
    stream_bytes: int = 0
    active_epochs: int = 0  # epochs in which the guest wrote the region
    checkpoints: int = 0
    inexact: list[Checkpoint] = field(default_factory=list)  # every inexact checkpoint
    all_checkpoints: list[Checkpoint] = field(default_factory=list)
    final: Checkpoint | None = None
    dropped_pages: list[int] = field(default_factory=list)
    corrupted_final_page: int | None = None  # negative control: made to differ at the end
    stop_reason: str = ""
    seconds: float = 0.0
    resumed: bool = False

    @property
    def pages_copied(self) -> int:
        return self.shm_pages + self.precopy_pages

    @property
    def replication_mbps(self) -> float:
        return round((self.shm_pages * PAGE * 8 / 1e6) / self.seconds, 3) if self.seconds else 0.0


class Replicator:
    def __init__(
        self,
        qmp_path: str,
        shm_path: str,
        dest: Destination,
        drop_every: int | None = None,
        until_quiet: float | None = None,
        checkpoint_every: float = 10.0,
        block_suffix: str = "/shm",
        interval: float = 0.2,
        corrupt_final_page: int | None = None,
    ) -> None:
        self.qmp_path = qmp_path
        self.shm_path = shm_path
        self.dest = dest
        self.drop_every = drop_every
        self.corrupt_final_page = corrupt_final_page
        self.until_quiet = until_quiet
        self.checkpoint_every = checkpoint_every
        self.block_suffix = block_suffix
        self.interval = interval  # between epochs, like the seed's daemon sleeps
        self.stop_requested = threading.Event()
        self._seen = 0
        # what the replica was given, page by page (the region is 1 MiB by default): the
        # words of a page that differs at a checkpoint, for any destination
        self.replica = bytearray()
        self.qmp = QEMUMonitorProtocol(qmp_path)

    # -- QMP ---------------------------------------------------------------------------
    def connect(self) -> str:
        # a QMP monitor serves one client at a time: a busy one never greets a second
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(GREETING_TIMEOUT)
        try:
            probe.connect(self.qmp_path)
            if not probe.recv(64):
                raise OSError("QEMU closed the monitor")
        except TimeoutError:
            raise ReplicationError(
                f"the QMP monitor at {self.qmp_path} sent no greeting within "
                f"{GREETING_TIMEOUT:.0f} s: another client holds it (use the VM's second "
                "monitor, qmp-service.sock)"
            ) from None
        except OSError as exc:
            raise ReplicationError(f"cannot talk QMP on {self.qmp_path}: {exc}") from None
        finally:
            probe.close()
        try:
            self.qmp.connect()
        except Exception as exc:
            raise ReplicationError(f"cannot talk QMP on {self.qmp_path}: {exc}") from None
        v = self.cmd("query-version")["qemu"]
        return f"{v['major']}.{v['minor']}.{v['micro']}"

    def cmd(self, name: str, **args: Any) -> Any:
        return self.qmp.cmd(name, **args)

    def _recover(self) -> None:
        """A previous daemon may have died mid-epoch: cancel its migration, resume the VM."""
        status = self.cmd("query-migrate").get("status", "none")
        if status in ("setup", "active", "device", "pre-switchover", "wait-unplug"):
            LOG.warning("a migration was in flight (%s): cancelling it", status)
            self.cmd("migrate_cancel")
            for _ in range(100):
                if self.cmd("query-migrate").get("status") not in (
                    "setup",
                    "active",
                    "device",
                    "cancelling",
                ):
                    break
                time.sleep(0.05)
        if self.cmd("query-status")["status"] in ("postmigrate", "paused", "finish-migrate"):
            LOG.warning("the VM was left paused by a migration: resuming it")
            self.cmd("cont")

    def _configure(self, downtime_ms: int) -> None:
        self.cmd(
            "migrate-set-capabilities",
            capabilities=capability_settings(self.cmd("query-migrate-capabilities"), events=False),
        )
        self.cmd(
            "migrate-set-parameters",
            **{"downtime-limit": downtime_ms, "max-bandwidth": ITERATE_BANDWIDTH},
        )

    # -- the work ----------------------------------------------------------------------
    def region(self) -> bytes:
        try:
            with open(self.shm_path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ReplicationError(
                f"cannot read the region {self.shm_path}: {exc.strerror}"
            ) from None

    def run(self) -> ReplicationReport:
        report = ReplicationReport(qemu_version=self.connect())
        try:
            return self._run(report)
        except BaseException:
            try:  # never leave the VM paused or a migration hanging
                self._recover()
            except Exception as exc:
                LOG.warning("could not resume the VM: %s", exc)
            raise
        finally:
            try:
                self.qmp.close()
            except Exception:  # QEMU may be gone
                pass

    def _run(self, report: ReplicationReport) -> ReplicationReport:
        started = time.monotonic()
        self._recover()
        region = self.region()
        if not region or len(region) % PAGE:
            raise ReplicationError(
                f"{self.shm_path} is {len(region)} bytes, not a whole number of pages"
            )
        report.region_bytes = len(region)
        report.destination = self.dest.describe()
        for offset in range(0, len(region), PAGE):
            self.dest.write(offset, region[offset : offset + PAGE])
        self.replica = bytearray(region)
        report.precopy_pages = len(region) // PAGE
        self.dest.flush()
        LOG.info(
            "pre-copied %d pages of %s to %s",
            report.precopy_pages,
            self.shm_path,
            self.dest.describe(),
        )
        self._configure(ITERATE_DOWNTIME_MS)
        region_pages = len(region) // PAGE
        epoch = 0
        armed = False  # the guest was seen writing the region
        last_activity = time.monotonic()
        while True:
            epoch += 1
            stats, block = self._epoch(epoch, self.stop_requested.is_set(), report)
            now = time.monotonic()
            # every epoch starts with a pass over all pages; more means guest writes
            if stats.shm_pages > region_pages:
                armed, last_activity = True, now
                report.active_epochs += 1
            if (
                self.until_quiet is not None
                and armed
                and not self.stop_requested.is_set()
                and now - last_activity >= self.until_quiet
            ):
                self.stop_reason = f"no guest write for {self.until_quiet:g} s"
                self.stop_requested.set()
            # a stop asked for during the epoch made it converge: its checkpoint is the last
            final = self.stop_requested.is_set()
            report.block = block
            report.epochs += 1
            report.rounds += stats.dirty_sync_count
            report.shm_pages += stats.shm_pages
            report.stream_pages += stats.stream_pages
            report.stream_bytes += stats.stream_bytes
            if final and self.corrupt_final_page is not None:
                self._corrupt_replica(self.corrupt_final_page)
                report.corrupted_final_page = self.corrupt_final_page
            checkpoint = self._checkpoint(epoch, final, stats)
            report.checkpoints += 1
            report.all_checkpoints.append(checkpoint)
            if not checkpoint.exact:
                report.inexact.append(checkpoint)
            if final:
                report.final = checkpoint
            LOG.info(
                "epoch %d: %d shm pages, %d sync rounds, checkpoint %s%s",
                epoch,
                stats.shm_pages,
                stats.dirty_sync_count,
                "exact"
                if checkpoint.exact
                else f"INEXACT ({len(checkpoint.differing_pages)} pages)",
                " (final)" if final else "",
            )
            self.cmd("cont")
            if final:
                report.resumed = self.cmd("query-status")["status"] == "running"
                break
            self.stop_requested.wait(self.interval)
        report.stop_reason = self.stop_reason
        report.seconds = round(time.monotonic() - started, 3)
        return report

    stop_reason = "signal"

    def _epoch(self, epoch: int, final: bool, report: ReplicationReport) -> tuple[EpochStats, str]:
        stats = EpochStats(epoch)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="testbed-replicate-") as tmp:
            path = os.path.join(tmp, "stream.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(1)
            self.cmd(
                "migrate-set-parameters",
                **{"downtime-limit": CONVERGE_DOWNTIME_MS if final else ITERATE_DOWNTIME_MS},
            )
            self.cmd("migrate", uri=f"unix:{path}")
            listener.settimeout(30)
            conn, _ = listener.accept()
            listener.close()
            found: dict[str, str] = {}
            outcome: dict[str, Any] = {}

            def on_page(block: str, offset: int, data: bytes | None) -> None:
                if not block.endswith(self.block_suffix):
                    return
                found["block"] = block
                stats.shm_pages += 1
                self._seen += 1
                page = offset // PAGE
                if self.drop_every and self._seen % self.drop_every == 0:
                    stats.dropped.append(page)
                    report.dropped_pages.append(page)
                    return
                page_data = data if data is not None else bytes(PAGE)
                self.dest.write(offset, page_data)
                self._mirror(offset, page_data)

            def on_section(kind: int, pages: int) -> None:
                stats.sections += 1

            def parse() -> None:
                try:
                    with conn, io.BufferedReader(conn.makefile("rb"), 1 << 20) as f:
                        parser = MigrationStreamParser(f, on_page, on_section)
                        outcome["stats"] = parser.parse()
                except (StreamError, OSError) as exc:
                    outcome["error"] = exc

            reader = threading.Thread(target=parse, name=f"epoch-{epoch}", daemon=True)
            reader.start()
            converging = final
            next_checkpoint = started + self.checkpoint_every
            while reader.is_alive():
                reader.join(0.1)
                info = self.cmd("query-migrate")
                if info.get("status") in ("failed", "cancelled"):
                    break
                if converging:
                    continue
                now = time.monotonic()
                if self.stop_requested.is_set() or now >= next_checkpoint:
                    converging = True  # let this epoch converge: a checkpoint
                    self.cmd("migrate-set-parameters", **{"downtime-limit": CONVERGE_DOWNTIME_MS})
            reader.join()
            if "error" in outcome:
                raise ReplicationError(f"epoch {epoch}: {outcome['error']}")
            if "block" not in found and not outcome["stats"].blocks:
                raise ReplicationError("the migration stream has no RAM blocks")
            block = found.get("block") or next(
                (b for b in outcome["stats"].blocks if b.endswith(self.block_suffix)), ""
            )
            if not block:
                raise ReplicationError(
                    f"no RAM block ending in {self.block_suffix!r} (blocks: "
                    f"{', '.join(outcome['stats'].blocks)}): the VM has no shared-memory "
                    "device (-device ivshmem-plain,memdev=...)"
                )
            for _ in range(200):
                info = self.cmd("query-migrate")
                if info.get("status") in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.05)
            if info.get("status") != "completed":
                raise ReplicationError(
                    f"epoch {epoch}: migration {info.get('status')}: {info.get('error-desc', '')}"
                )
            ram = info.get("ram", {})
            stats.dirty_sync_count = ram.get("dirty-sync-count", 0)
            if "normal" in ram:
                stats.qemu_pages = ram["normal"] + ram.get("duplicate", 0)
            stats.stream_pages = outcome["stats"].pages
            stats.stream_bytes = outcome["stats"].bytes_read
        stats.seconds = round(time.monotonic() - started, 3)
        return stats, block

    def _mirror(self, offset: int, data: bytes) -> None:
        """Keep what the replica was given (within the region: the mirror never grows)."""
        if offset + len(data) <= len(self.replica):
            self.replica[offset : offset + len(data)] = data

    def _corrupt_replica(self, page: int) -> None:
        """Negative control: the replica's page ``page`` made to differ from the region's
        (every bit flipped) just before the final checkpoint, as a write lost by the last
        pass would leave it: final-identity and sum-r must fail."""
        region = self.region()
        if not 0 <= page < len(region) // PAGE:
            raise ReplicationError(
                f"--corrupt-final-page {page} is outside the region ({len(region) // PAGE} pages)"
            )
        original = region[page * PAGE : (page + 1) * PAGE]
        altered = bytes(byte ^ 0xFF for byte in original)
        self.dest.write(page * PAGE, altered)
        self._mirror(page * PAGE, altered)
        LOG.info("negative control: page %d of the replica altered before the final check", page)

    def _checkpoint(self, epoch: int, final: bool, stats: EpochStats) -> Checkpoint:
        """The VM is paused (postmigrate): compare destination and region."""
        status = self.cmd("query-status")["status"]
        self.dest.flush()
        region = self.region()
        src, dst = page_hashes(region), self.dest.hashes()
        differing = [
            i // HASH_BYTES
            for i in range(0, len(src), HASH_BYTES)
            if src[i : i + HASH_BYTES] != dst[i : i + HASH_BYTES]
        ]
        if len(src) != len(dst):
            differing.append(-1)
        s_sum, s_blocks = bsd_sum(region)
        d_sum, d_blocks = self.dest.bsd_sum()
        diffs = [
            page_diff(
                page,
                region[page * PAGE : (page + 1) * PAGE],
                bytes(self.replica[page * PAGE : (page + 1) * PAGE]),
            )
            for page in differing[:MAX_PAGE_DIFFS]
            if page >= 0
        ]
        return Checkpoint(
            epoch,
            final,
            not differing,
            differing,
            f"{s_sum:05d} {s_blocks:5d}",
            f"{d_sum:05d} {d_blocks:5d}",
            status,
            stats.qemu_pages,
            stats.stream_pages,
            diffs,
        )


def run_daemon(
    qmp: str,
    shm: str,
    dest: str | None,
    remote: str | None,
    drop_every: int | None,
    until_quiet: float | None,
    checkpoint_every: float,
    result_path: str | None,
    corrupt_final_page: int | None = None,
) -> ReplicationReport:
    if not os.path.exists(shm):
        raise ReplicationError(
            f"no shared-memory file {shm}: is the VM running with "
            "-object memory-backend-file,mem-path=...?"
        )
    if not os.path.exists(qmp):
        raise ReplicationError(f"no QMP socket at {qmp}")
    size = os.path.getsize(shm)
    if remote:
        destination: Destination = RemoteDestination(remote, size)
    else:
        if dest is None:
            raise ReplicationError("give --dest FILE or --remote HOST:PORT")
        destination = FileDestination(dest, size)
    replicator = Replicator(
        qmp,
        shm,
        destination,
        drop_every,
        until_quiet,
        checkpoint_every,
        corrupt_final_page=corrupt_final_page,
    )

    def on_signal(signum: int, frame: Any) -> None:
        replicator.stop_reason = f"signal {signal.Signals(signum).name}"
        replicator.stop_requested.set()

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        result = replicator.run()
    finally:
        destination.close()
    if result_path:
        Path(result_path).write_text(json.dumps(codec.to_json(result), indent=2))
    return result
