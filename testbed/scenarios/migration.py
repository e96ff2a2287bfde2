"""Seed procedure 1: live migration of a guest whose root disk is on the NFS server,
verified page by page.

Per migration: the destination starts paused (-S) with -incoming; after completion both
sides are paused, guest RAM is dumped on both through QMP (pmemsave) and compared page by
page; then the destination resumes, dirtyram on the destination must show no stale page
over at least two full passes, writeout's time lines must go on, and the NFS server
reaches the guest again only after its route is switched."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import docker

from testbed import images, topology
from testbed.arch import get_arch
from testbed.errors import UserError
from testbed.lab import Lab
from testbed.node.accel import ACCELS
from testbed.node.net import parse_rate
from testbed.node.replicate import capabilities_off
from testbed.scenarios.guestlog import (
    decode_stamp,
    differing_pages,
    parse_dirtyram,
    parse_writeout,
)
from testbed.topology import Node

LOG = logging.getLogger(__name__)

MIGRATION_PORT = 4321
GDB_PORT = 1234
UNLIMITED_BANDWIDTH = 100 * 1024**3  # bytes/s: QEMU's own cap (128 MiB/s on 7.2) must not limit
PEEK_LIMIT = 32  # differing pages whose stamps are decoded and reported

StepCallback = Callable[[str], None]
ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass
class MigrationParams:
    arch: str = "armv7"
    pages: int = 16384  # 64 MiB of 4 KiB pages
    burst: int = 512
    period_ms: int = 50
    mem_mb: int = 512
    smp: int = 1
    bandwidth: str | None = None  # tc tbf on the boards' lab link
    round_trips: int = 0
    accel: str = "auto"
    suite: str = images.DEFAULT_SUITE
    lab: str = "gauss"
    topology_file: str | None = None
    passes_before: int = 1  # full dirtyram passes before migrating
    passes_after: int = 2  # full passes the destination must check with no stale page
    migration_timeout: float = 600.0
    stall_timeout: float = 15.0  # no progress this long: the migration is cancelled
    retries: int = 0  # a failed migration is tried again this many times
    corrupt_page: int | None = None  # negative control: alter this guest page on arrival

    def validate(self) -> None:
        arch = get_arch(self.arch)
        if self.accel not in ACCELS:
            raise UserError(
                f"unknown accelerator {self.accel!r}", f"use one of {', '.join(ACCELS)}"
            )
        if self.pages < 1 or self.burst < 1 or self.period_ms < 1:
            raise UserError("--pages, --burst and --period must be positive")
        if self.burst > self.pages:
            raise UserError(
                f"--burst {self.burst} is larger than --pages {self.pages}",
                "a burst rewrites at most every page once",
            )
        if not 64 <= self.mem_mb <= arch.max_mem_mb:
            raise UserError(
                f"--mem {self.mem_mb} is out of range for {arch.name}",
                f"use 64 to {arch.max_mem_mb} MB",
            )
        if self.pages * 4096 > (self.mem_mb << 20) * 0.85:
            raise UserError(
                f"--pages {self.pages} ({self.pages * 4096 >> 20} MiB) does not fit a guest "
                f"with --mem {self.mem_mb}",
                "give the guest more --mem or dirty fewer pages",
            )
        if not 1 <= self.smp <= 8:
            raise UserError(f"--smp {self.smp} is out of range", "use 1 to 8")
        if self.round_trips < 0 or self.retries < 0:
            raise UserError("--round-trips and --retries must be 0 or more")
        if self.corrupt_page is not None and not 0 <= self.corrupt_page < self.mem_mb * 256:
            raise UserError(
                f"--corrupt-page {self.corrupt_page} is outside the guest's RAM",
                f"use 0 to {self.mem_mb * 256 - 1}",
            )
        if self.bandwidth is not None:
            try:
                parse_rate(self.bandwidth)
            except ValueError as exc:
                raise UserError(f"--bandwidth: {exc}") from None
        images.check_suite(self.suite)

    @property
    def stride(self) -> int:
        return self.pages // self.burst

    @property
    def pass_seconds(self) -> float:
        return self.stride * self.period_ms / 1000


@dataclass
class MigrationRecord:
    index: int
    source: str
    destination: str
    attempt: int = 1
    verdict: str = "fail"
    failures: list[str] = field(default_factory=list)
    migration: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    dirtyram: dict[str, Any] = field(default_factory=dict)
    writeout: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    source_after_failure: dict[str, Any] = field(default_factory=dict)


@dataclass
class MigrationResult:
    scenario: str
    arch: str
    qemu_version: str
    qemu_package: str
    accel: str
    verdict: str
    params: dict[str, Any]
    migrations: list[MigrationRecord]
    dirtyram: dict[str, Any]
    disk: dict[str, Any]
    boot: dict[str, Any]
    failures: list[str]
    wall_seconds: float
    artifacts: dict[str, str] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("artifacts")
        first = self.migrations[0] if self.migrations else None
        # the first migration's figures at the top level, every migration in the list
        data["migration"] = first.migration if first else {}
        data["memory"] = first.memory if first else {}
        data["network"] = first.network if first else {}
        return data


class MigrationScenario:
    def __init__(
        self,
        client: docker.DockerClient,
        params: MigrationParams,
        on_step: StepCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        params.validate()
        self.client = client
        self.params = params
        self.step = on_step or (lambda text: LOG.info("%s", text))
        self.progress = on_progress or (lambda info: None)
        topo = topology.load(params.topology_file) if params.topology_file else None
        self.lab = Lab(client, params.lab, topo, params.suite)
        self.artifacts: dict[str, str] = {}
        self.versions: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------------
    def vm(self, node: str, *args: str) -> dict[str, Any]:
        return self.lab.agent(node, "vm", *args)

    def qmp(self, node: str, command: str, **arguments: Any) -> Any:
        return self.vm(node, "qmp", "--execute", command, "--arguments", json.dumps(arguments))[
            "return"
        ]

    def console(self, node: str) -> str:
        return str(self.vm(node, "console")["text"])

    def collect(self, label: str, node: str) -> None:
        """Keep a VM's console and QEMU log for the report before the VM is replaced."""
        self.artifacts[f"console-{label}-{node}.log"] = self.console(node)
        code, log = self.lab.exec(node, ["cat", "/run/testbed/vm/guest/qemu.log"])
        self.artifacts[f"qemu-{label}-{node}.log"] = log if code == 0 else ""

    def spec(self, node: Node, incoming: bool, gdb: bool) -> dict[str, Any]:
        p = self.params
        topo = self.lab.topology
        return {
            "arch": p.arch,
            "accel": p.accel,
            "mem_mb": p.mem_mb,
            "smp": p.smp,
            "disk": self.disk_url,
            "tap": node.taps[0].name,
            "mac": topo.guest.mac,
            "guest_ip": topo.guest.address,
            "guest_gateway": topo.guest.gateway,
            "incoming": f"tcp:0:{MIGRATION_PORT}" if incoming else None,
            "paused": incoming,
            "gdb_port": GDB_PORT if gdb else None,
        }

    # -- the procedure ---------------------------------------------------------------------
    def run(self) -> MigrationResult:
        p = self.params
        started = time.monotonic()
        self.lab.up(bandwidth=p.bandwidth, on_step=lambda text: LOG.info("%s", text))
        self.step(
            f"lab {p.lab}: up" + (f", boards' link shaped to {p.bandwidth}" if p.bandwidth else "")
        )
        topo = self.lab.topology
        source, destination = topo.boards[0], topo.boards[1]
        for board in topo.boards:
            self.vm(board.name, "stop")  # a VM left by an interrupted run
        self.lab.switch_route(source.name)  # the seed's starting state
        image = f"root-{p.arch}.img"
        self.disk_url = f"nfs://{topo.nfs.address}/srv/mnt/{image}"
        self.disk_path = f"/srv/mnt/{image}"
        self.step(f"pristine root disk {image} onto the NFS export")
        code, out = self.lab.exec(
            source.name,
            [
                "qemu-img",
                "convert",
                "-f",
                "raw",
                "-O",
                "raw",
                f"/opt/testbed/guest/{p.arch}/rootfs.ext3",
                self.disk_url,
            ],
        )
        if code != 0:
            raise UserError(f"cannot copy the root disk to {self.disk_url}: {out.strip()}")

        self.step(
            f"source QEMU on {source.name}: {p.arch}, -m {p.mem_mb}, -smp {p.smp}, disk over nfs://"
        )
        started_vm = self.vm(
            source.name, "start", "--spec", json.dumps(self.spec(source, incoming=False, gdb=False))
        )
        self.versions = {
            "qemu_version": started_vm["qemu_version"],
            "qemu_package": started_vm["qemu_package"],
            "accel": started_vm["accel"],
        }
        ready = self.vm(source.name, "ready", "--timeout", "180")
        if ready["root"] != "disk":
            raise UserError(f"the guest did not boot from the NFS disk (root={ready['root']})")
        self.step(
            f"guest ready after {ready['seconds']:.1f} s ({ready['arch']}, root on "
            "the NFS disk); starting dirtyram and writeout.sh"
        )
        self.vm(source.name, "send", "--text", f"dirtyram {p.pages} {p.burst} {p.period_ms} &\\n")
        self.vm(source.name, "send", "--text", "writeout.sh &\\n")
        self.wait_passes(source.name, "", p.passes_before, "before migrating")

        records: list[MigrationRecord] = []
        # the seed's single migration, or K round trips A -> B -> A
        hops = [(source, destination), (destination, source)] * p.round_trips or [
            (source, destination)
        ]
        for index, (src, dst) in enumerate(hops):
            corrupt = p.corrupt_page if index == 0 else None
            for attempt in range(1, p.retries + 2):
                record = self.migrate_once(index, src, dst, corrupt, attempt)
                records.append(record)
                if record.migration.get("status") == "completed" or attempt > p.retries:
                    break
                self.step(
                    f"migration {index + 1}: retrying (attempt {attempt + 1}) after healing the lab"
                )
                self.lab.up(bandwidth=p.bandwidth, on_step=lambda text: LOG.info("%s", text))
            if record.migration.get("status") != "completed":
                break
        final_node = (
            records[-1].destination
            if records[-1].migration.get("status") == "completed"
            else records[-1].source
        )
        dirtyram, disk = self.finish(final_node)

        # a failed attempt that a retry made good is reported in its record, not counted
        # as a failure; every check's failure is
        completed = {r.index for r in records if r.migration.get("status") == "completed"}
        failures = []
        for r in records:
            where = f"migration {r.index + 1} ({r.source} -> {r.destination})"
            if r.migration.get("status") != "completed" and r.index not in completed:
                failures.append(
                    f"{where}: {r.migration.get('status')}: {r.migration.get('error', '')}"
                )
            failures += [f"{where}: {f}" for f in r.failures]
        if dirtyram.get("stale", 0):
            failures.append(f"dirtyram found {dirtyram['stale']} stale page(s) in the end")
        if not disk.get("fsck_clean"):
            failures.append("e2fsck -fn of the root disk is not clean")
        return MigrationResult(
            scenario="migration",
            arch=p.arch,
            verdict="fail" if failures else "pass",
            params=asdict(p),
            migrations=records,
            dirtyram=dirtyram,
            disk=disk,
            boot=ready,
            failures=failures,
            wall_seconds=round(time.monotonic() - started, 1),
            artifacts=self.artifacts,
            **self.versions,
        )

    def wait_passes(
        self,
        node: str,
        console_before: str,
        passes: int,
        why: str,
        timeout: float | None = None,
        base_console: str | None = None,
    ) -> Any:
        """Wait until dirtyram on ``node`` completed ``passes`` more full passes than the
        last status in ``base_console`` (default ``console_before``, the part of the node's
        console already seen); returns the dirtyram log of the new output."""
        base = parse_dirtyram(console_before if base_console is None else base_console).last
        target = (base.passes if base else 0) + passes
        limit = timeout or max(60.0, 6 * passes * self.params.pass_seconds + 30)
        deadline = time.monotonic() + limit
        while True:
            text = self.console(node)
            log = parse_dirtyram(text[len(console_before) :] if console_before else text)
            last = log.last
            if last and last.passes >= target:
                return log
            if time.monotonic() > deadline:
                raise UserError(
                    f"dirtyram on {node} did not complete {passes} pass(es) {why} "
                    f"within {limit:.0f} s (last: {last})"
                )
            time.sleep(0.5)

    def migrate_once(
        self, index: int, src: Node, dst: Node, corrupt_page: int | None, attempt: int = 1
    ) -> MigrationRecord:
        p = self.params
        record = MigrationRecord(index, src.name, dst.name, attempt)
        self.step(
            f"migration {index + 1}: destination QEMU on {dst.name} "
            f"(-incoming tcp:0:{MIGRATION_PORT}, -S)"
        )
        self.vm(
            dst.name,
            "start",
            "--spec",
            json.dumps(self.spec(dst, incoming=True, gdb=corrupt_page is not None)),
        )
        self.qmp(
            src.name,
            "migrate-set-capabilities",
            capabilities=capabilities_off(self.qmp(src.name, "query-migrate-capabilities")),
        )
        self.qmp(src.name, "migrate-set-parameters", **{"max-bandwidth": UNLIMITED_BANDWIDTH})
        console_before = self.console(src.name)
        uri = f"tcp:{dst.address}:{MIGRATION_PORT}"
        self.step(f"migration {index + 1}: {src.name} -> {dst.name}: migrate {uri}")
        info = self.watch_migration(src.name, uri)
        record.migration = info
        if info["status"] != "completed":
            self.vm(dst.name, "stop")
            # the source guest must simply go on, without losing a write
            status = self.wait_status(src.name, ("running",))
            after = self.wait_passes(src.name, console_before, 1, "after the failed migration")
            base = parse_dirtyram(console_before).last
            stale = (after.last.stale if after.last else 0) - (base.stale if base else 0)
            record.source_after_failure = {
                "status": status,
                "stale": stale,
                "passes": after.last.passes if after.last else 0,
            }
            if stale:
                record.failures.append(
                    f"the source guest found {stale} stale page(s) after the failed migration"
                )
            self.step(
                f"migration {index + 1}: {info['status']} ({info.get('error', '')}); "
                f"source guest {status}, dirtyram stale={stale}"
            )
            self.collect(f"{index + 1}-attempt{attempt}", src.name)
            return record

        # -- memory, both sides paused -------------------------------------------------------
        src_status = self.qmp(src.name, "query-status")["status"]
        # what the source printed up to its pause (it ran on during the transfer)
        console_before = self.console(src.name)
        dst_status = self.wait_status(dst.name, ("paused",))
        if corrupt_page is not None:
            poke = self.vm(dst.name, "poke", "--page", str(corrupt_page), "--data", "5a" * 32)
            self.step(
                f"negative control: page {corrupt_page} altered on {dst.name} "
                f"({poke['address']}, VM {poke['status_after']})"
            )
        self.step(
            f"migration {index + 1}: comparing guest RAM page by page "
            f"({src.name} {src_status}, {dst.name} {dst_status})"
        )
        record.memory = self.compare_memory(src.name, dst.name)
        if record.memory["pages_differing"]:
            record.failures.append(
                f"{record.memory['pages_differing']} page(s) differ between source and "
                f"destination: {record.memory['differing_pages'][:16]}"
            )

        # -- the destination runs on -------------------------------------------------------------
        self.qmp(dst.name, "cont")
        resumed = time.monotonic()
        self.collect(f"{index + 1}", src.name)
        self.vm(src.name, "stop")  # frees the source's tap for a later trip back
        record.network = self.check_network(dst.name, resumed)
        if not record.network.get("reachable_after_switch"):
            record.failures.append("the NFS server cannot reach the guest after the switch")
        self.step(
            f"migration {index + 1}: dirtyram on {dst.name} must check "
            f"{p.passes_after} full passes without a stale page"
        )
        # dirtyram's counters go on from where the source paused
        after = self.wait_passes(
            dst.name, "", p.passes_after, "after migration", base_console=console_before
        )
        before_log = parse_dirtyram(console_before)
        stale_before = before_log.last.stale if before_log.last else 0
        stale_after = after.last.stale if after.last else 0
        record.dirtyram = {
            "checked": after.last.checked if after.last else 0,
            "passes_after": after.last.passes - (before_log.last.passes if before_log.last else 0)
            if after.last
            else 0,
            "stale_before": stale_before,
            "stale": stale_after - stale_before,
            "stale_pages": after.stale_pages,
        }
        if record.dirtyram["stale"]:
            record.failures.append(
                f"dirtyram found {record.dirtyram['stale']} stale page(s) "
                f"on {dst.name}: {after.stale_pages[:16]}"
            )
        record.writeout = self.check_writeout(
            console_before, self.console(dst.name), info.get("downtime_ms")
        )
        if not record.writeout["continues"]:
            record.failures.append(f"writeout: {record.writeout['problem']}")
        record.verdict = "fail" if record.failures else "pass"
        self.step(f"migration {index + 1}: {record.verdict.upper()}")
        return record

    def watch_migration(self, node: str, uri: str) -> dict[str, Any]:
        p = self.params
        self.qmp(node, "migrate", uri=uri)
        started = time.monotonic()
        last_bytes, last_change = -1, time.monotonic()
        while True:
            info = self.qmp(node, "query-migrate")
            status = info.get("status", "none")
            ram = info.get("ram", {})
            self.progress(
                {
                    "status": status,
                    "transferred": ram.get("transferred", 0),
                    "total": ram.get("total", 0),
                    "remaining": ram.get("remaining", 0),
                    "mbps": ram.get("mbps", 0.0),
                    "dirty_pages_rate": ram.get("dirty-pages-rate", 0),
                }
            )
            if status in ("completed", "failed", "cancelled"):
                break
            now = time.monotonic()
            if ram.get("transferred", 0) != last_bytes:
                last_bytes, last_change = ram.get("transferred", 0), now
            elif now - last_change > p.stall_timeout:
                self.qmp(node, "migrate_cancel")
                self.wait_migration_end(node)
                return {
                    "status": "failed",
                    "error": f"no progress for {p.stall_timeout:.0f} s: "
                    "cancelled (is the lab link down?)",
                    "wall_ms": round((now - started) * 1000),
                }
            if now - started > p.migration_timeout:
                self.qmp(node, "migrate_cancel")
                self.wait_migration_end(node)
                return {
                    "status": "failed",
                    "error": f"not converged in {p.migration_timeout:.0f} s: cancelled",
                }
            time.sleep(0.3)
        ram = info.get("ram", {})
        total_ms = info.get("total-time")
        transferred = ram.get("transferred", 0)
        result = {
            "status": status,
            "total_ms": total_ms,
            "downtime_ms": info.get("downtime"),
            "setup_ms": info.get("setup-time"),
            "transferred_bytes": transferred,
            "throughput_mbps": ram.get("mbps"),
            "dirty_sync_count": ram.get("dirty-sync-count"),
            "dirty_pages_rate": ram.get("dirty-pages-rate"),
            "normal_pages": ram.get("normal"),
            "zero_pages": ram.get("duplicate"),
            "expected_downtime_ms": info.get("expected-downtime"),
        }
        if status != "completed":
            result["error"] = info.get("error-desc", "")
        if self.params.bandwidth and total_ms:
            link = parse_rate(self.params.bandwidth)
            result["link_fraction"] = round(transferred * 8 / (total_ms / 1000) / link, 3)
        return result

    def wait_migration_end(self, node: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.qmp(node, "query-migrate").get("status") in ("cancelled", "failed"):
                return
            time.sleep(0.3)

    def wait_status(self, node: str, wanted: tuple[str, ...], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status = str(self.qmp(node, "query-status")["status"])
            if status in wanted:
                return status
            if time.monotonic() > deadline:
                raise UserError(f"{node}: VM is {status}, expected {' or '.join(wanted)}")
            time.sleep(0.1)

    def compare_memory(self, src: str, dst: str) -> dict[str, Any]:
        a = self.vm(src, "ram-hashes", "--mem", str(self.params.mem_mb))
        b = self.vm(dst, "ram-hashes", "--mem", str(self.params.mem_mb))
        try:
            pages = differing_pages(
                base64.b64decode(a["hashes"]), base64.b64decode(b["hashes"]), int(a["hash_bytes"])
            )
            details = []
            if pages:
                peek = ",".join(str(n) for n in pages[:PEEK_LIMIT])
                src_heads = self.vm(src, "ram-peek", "--pages", peek)["pages"]
                dst_heads = self.vm(dst, "ram-peek", "--pages", peek)["pages"]
                for n in pages[:PEEK_LIMIT]:
                    s = decode_stamp(bytes.fromhex(src_heads[str(n)]))
                    d = decode_stamp(bytes.fromhex(dst_heads[str(n)]))
                    details.append(
                        {
                            "page": n,
                            "guest_physical": hex(0x40000000 + n * 4096),
                            "source_stamp": asdict(s) if s else None,
                            "destination_stamp": asdict(d) if d else None,
                        }
                    )
        finally:
            self.vm(src, "ram-drop")
            self.vm(dst, "ram-drop")
        return {
            "pages_compared": a["pages"],
            "pages_differing": len(pages),
            "differing_pages": pages,
            "details": details,
            "dump_seconds": [a["seconds"], b["seconds"]],
        }

    def guest_ping(self) -> bool:
        code, _ = self.lab.exec(
            self.lab.topology.nfs.name, ["ping", "-c", "1", "-W", "1", self.lab.topology.guest.ip]
        )
        return code == 0

    def check_network(self, dst: str, resumed: float) -> dict[str, Any]:
        """The seed's observation: after the migration the NFS server cannot reach the
        guest until its host route is switched to the destination board."""
        before = self.guest_ping()
        switched = time.monotonic()
        switch = self.lab.switch_route(dst)
        deadline = time.monotonic() + 30
        reachable = False
        while time.monotonic() < deadline:
            if self.guest_ping():
                reachable = True
                break
        now = time.monotonic()
        outage_ms = round((now - resumed) * 1000) if reachable else None
        self.step(
            f"network: NFS server -> guest before the switch: "
            f"{'reachable' if before else 'unreachable'}; route switched to {dst}; "
            f"reachable {round((now - switched) * 1000)} ms after the switch"
        )
        return {
            "reachable_before_switch": before,
            "reachable_after_switch": reachable,
            "outage_ms": outage_ms,  # destination resumed -> first reply
            "switch_to_reply_ms": round((now - switched) * 1000) if reachable else None,
            "switch_kernel_ms": switch["kernel_ms"],
        }

    def check_writeout(self, before: str, after: str, downtime_ms: Any) -> dict[str, Any]:
        old, new = parse_writeout(before), parse_writeout(after)
        if not new:
            return {"continues": False, "problem": "no time line on the destination's console"}
        if not old:
            return {"continues": False, "problem": "no time line on the source's console"}
        gap = new[0] - old[-1]
        # the guest's clock does not run while the VM is paused (QEMU's virtual clock), so
        # the guest-time gap is the 1 s period plus what the guest saw of the downtime;
        # allowed: that within 1 s, plus 1 s for the lines' whole-second resolution
        allowed = 1 + (downtime_ms or 0) / 1000 + 1 + 1
        ok = 0 <= gap <= allowed and all(b >= a for a, b in zip(new, new[1:], strict=False))
        return {
            "continues": ok,
            "gap_seconds": gap,
            "allowed_seconds": round(allowed, 3),
            "lines_after": len(new),
            "problem": ""
            if ok
            else f"gap of {gap} s between the last line on the "
            f"source and the first on the destination (allowed {allowed:.1f} s)",
        }

    def finish(self, node: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Stop the guest programs, power the guest off, and check the disk."""
        self.step(f"stopping dirtyram and writeout on {node}; powering the guest off")
        before = self.console(node)
        self.vm(node, "send", "--text", "kill %1 %2; sync\\n")
        deadline = time.monotonic() + 30
        summary = None
        while time.monotonic() < deadline and summary is None:
            summary = parse_dirtyram(self.console(node)[len(before) :]).summary
            time.sleep(0.3)
        self.vm(node, "send", "--text", "sync; poweroff -f\\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.vm(node, "alive")["alive"]:
            time.sleep(0.3)
        self.collect("final", node)
        self.vm(node, "stop")
        dirtyram = asdict(summary) if summary else {"error": "no dirtyram summary"}
        code, out = self.lab.exec(self.lab.topology.nfs.name, ["e2fsck", "-fn", self.disk_path])
        self.step(f"e2fsck -fn {self.disk_path}: {'clean' if code == 0 else 'NOT clean'}")
        return dirtyram, {
            "fsck_clean": code == 0,
            "fsck_exit": code,
            "fsck_output": out.strip().splitlines()[-3:],
        }
