"""The live-migration procedure's observations and its checks (pure: no Docker, no QEMU).

The scenario observes; :func:`judge` decides.  Per migration (hop) that completed:

* ``ram-pages``: guest RAM of source and destination, both paused at switchover, is
  identical page by page (CRC-32 per page, SHA-256 per MiB);
* ``load-stale``: every load with a stale check found no stale page on the destination
  after the wanted number of passes (a stale page is a dirty page that was lost);
* ``writeout-gap``: writeout.sh's time lines go on on the destination, with a gap the
  downtime explains;
* ``unreachable-before-switch``: through the NFS server's old route (to the source
  board) the migrated guest does not answer (the seed's observation; an answer means the
  source guest still runs: a split brain);
* ``reachable-after-switch``: after the route switch it does.

Per migration that did not complete: ``migration-completed`` fails (with the fault, e.g.
"destination gauss-b died during migration 1: container exited 137") unless a retry
completed it, and ``source-intact`` checks that the source guest went on running without
a stale page.  Per run: ``e2fsck`` of the root disk after the guest powered off, and
``loads-final`` (every load's own summary says PASS)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from testbed.checks.base import CheckResult, failed, passed, skipped
from testbed.codec import Json
from testbed.protocol import MigrationOutcome

RAM_BASE = 0x40000000
PAGE = 4096


# -- observations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageDiff:
    page: int
    guest_physical: str
    source_stamp: str | None
    destination_stamp: str | None


@dataclass(frozen=True)
class MemoryObservation:
    pages_compared: int
    differing_pages: list[int]
    unlocalized_blocks: list[int]  # MiB blocks whose SHA-256 differs while no page CRC does
    details: list[PageDiff]
    dump_seconds: list[float]


@dataclass(frozen=True)
class LoadObservation:
    """One load on the destination, counted from where the source paused."""

    ident: str
    mode: str
    stale_before: int
    stale_after: int
    passes_before: int
    passes_after: int
    checked: int
    stale_pages: list[str]
    passes_wanted: int = 1  # full passes the destination had to complete

    @property
    def new_stale(self) -> int:
        return self.stale_after - self.stale_before


@dataclass(frozen=True)
class WriteoutObservation:
    last_on_source: int | None  # epoch seconds of the guest's last line on the source
    first_on_destination: int | None
    lines_after: int
    monotonic: bool
    downtime_ms: int | None
    largest_step: int | None = None  # the largest step between two lines on the destination


@dataclass(frozen=True)
class NetworkObservation:
    resumed_at: float | None  # the destination's RESUME event (QEMU's clock)
    switched_at: float | None  # the NFS server's route replaced (the node's clock)
    first_reply_at: float | None  # the guest's first echo reply after the switch
    switch_kernel_ms: float | None
    old_board: str  # where the route pointed before the switch
    old_route_sent: int  # echo requests sent through the old route after the migration
    old_route_replies: int


@dataclass(frozen=True)
class SourceAfterFailure:
    status: str  # the source VM's run state after the failed migration
    stale: int | None  # stale pages its loads found meanwhile (None: not readable)
    passes: int


@dataclass(frozen=True)
class HopObservation:
    index: int  # 0-based
    source: str
    destination: str
    attempt: int
    migration: MigrationOutcome | None
    fault: str | None = None
    memory: MemoryObservation | None = None
    loads: list[LoadObservation] = field(default_factory=list)
    writeout: WriteoutObservation | None = None
    network: NetworkObservation | None = None
    source_after_failure: SourceAfterFailure | None = None

    @property
    def completed(self) -> bool:
        return (
            self.fault is None
            and self.migration is not None
            and (self.migration.status == "completed")
        )

    @property
    def subject(self) -> str:
        attempt = f", attempt {self.attempt}" if self.attempt > 1 else ""
        return f"migration {self.index + 1} ({self.source} -> {self.destination}{attempt})"


@dataclass(frozen=True)
class FinalLoad:
    ident: str
    result: str | None  # PASS | FAIL from the load's summary; None if none was printed
    stale: int | None


@dataclass(frozen=True)
class DiskObservation:
    fsck_exit: int | None
    fsck_output: list[str]


@dataclass(frozen=True)
class MigrationObservations:
    hops: list[HopObservation]
    final_loads: list[FinalLoad]
    disk: DiskObservation | None
    fault: str | None = None  # a fault outside the migrations (boot, the final steps)
    kept_running: bool = False  # --keep: the guest runs on, so no power-off and no e2fsck


# -- pure helpers ---------------------------------------------------------------------------
def decode_stamp(head: bytes, magics: dict[str, int]) -> str | None:
    """A load's stamp at the head of a page, as text (``seed page=12 counter=345``)."""
    if len(head) < 32:
        return None
    magic, page, counter, _check = struct.unpack("<4Q", head[:32])
    for mode, value in magics.items():
        if magic == value:
            return f"{mode} page={page} counter={counter}"
    return None


CHECK_K1 = 0x9E3779B97F4A7C15
CHECK_K2 = 0xC2B2AE3D27D4EB4F
MASK = (1 << 64) - 1


def older_stamp(head: bytes, magics: dict[str, int]) -> bytes | None:
    """A well-formed stamp of an earlier write to this page (its counter minus one), as a
    lost dirty page would show one, or None if ``head`` holds no load's stamp."""
    if len(head) < 32:
        return None
    magic, page, counter, _check = struct.unpack("<4Q", head[:32])
    if magic not in magics.values() or counter == 0:
        return None
    older = counter - 1
    check = (magic ^ (page * CHECK_K1) ^ (older * CHECK_K2)) & MASK
    return struct.pack("<4Q", magic, page, older, check)


def outage_ms(net: NetworkObservation) -> float | None:
    """From the destination's resume to the guest's first answer to the NFS server."""
    if net.resumed_at is None or net.first_reply_at is None:
        return None
    return round((net.first_reply_at - net.resumed_at) * 1000, 1)


def switch_to_reply_ms(net: NetworkObservation) -> float | None:
    if net.switched_at is None or net.first_reply_at is None:
        return None
    return round((net.first_reply_at - net.switched_at) * 1000, 1)


MAX_STEP_SECONDS = 3  # writeout sleeps 1 s; under a loaded TCG host a line may come late


def writeout_allowance(downtime_ms: int | None) -> float:
    """Seconds allowed between the last time line on the source and the first on the
    destination: the guest's clock does not run while QEMU is paused, so the 1 s period
    plus what the guest saw of the downtime, plus 1 s for the lines' whole-second
    resolution and 1 s for a line in flight."""
    return 1 + (downtime_ms or 0) / 1000 + 1 + 1


# -- checks ----------------------------------------------------------------------------------
class RamPages:
    name = "ram-pages"
    description = "guest RAM identical page by page at switchover (both sides paused)"

    def judge(self, hop: HopObservation) -> CheckResult:
        mem = hop.memory
        if mem is None:
            return failed(self.name, hop.subject, "guest RAM was not compared")
        evidence: dict[str, Json] = {
            "pages_compared": mem.pages_compared,
            "pages_differing": len(mem.differing_pages),
            "differing_pages": list(mem.differing_pages[:256]),
            "unlocalized_blocks": list(mem.unlocalized_blocks),
        }
        if mem.unlocalized_blocks and not mem.differing_pages:
            return failed(
                self.name,
                hop.subject,
                f"MiB block(s) {mem.unlocalized_blocks[:8]} differ though no page CRC-32 does",
                **evidence,
            )
        if mem.differing_pages:
            first = mem.details[0] if mem.details else None
            where = (
                (
                    f"; page {first.page} at {first.guest_physical}: source "
                    f"{first.source_stamp or 'no stamp'}, destination "
                    f"{first.destination_stamp or 'no stamp'}"
                )
                if first
                else ""
            )
            return failed(
                self.name,
                hop.subject,
                f"{len(mem.differing_pages)} of {mem.pages_compared} pages differ "
                f"between source and destination: {mem.differing_pages[:16]}{where}",
                **evidence,
            )
        return passed(self.name, hop.subject, f"{mem.pages_compared} pages identical", **evidence)


class LoadStale:
    name = "load-stale"
    description = "no stale page found by the loads on the destination"

    def judge(self, hop: HopObservation, load: LoadObservation) -> CheckResult:
        subject = f"{hop.subject}, load {load.ident}"
        evidence: dict[str, Json] = {
            "mode": load.mode,
            "stale": load.new_stale,
            "passes_after": load.passes_after,
            "checked": load.checked,
            "stale_pages": list(load.stale_pages[:64]),
        }
        if load.new_stale:
            return failed(
                self.name,
                subject,
                f"{load.new_stale} stale page(s) on {hop.destination}: {load.stale_pages[:16]}",
                **evidence,
            )
        if load.passes_after < load.passes_before + load.passes_wanted:
            return failed(
                self.name,
                subject,
                f"the load completed {max(0, load.passes_after - load.passes_before)} of "
                f"{load.passes_wanted} passes on {hop.destination} (it stopped reporting: "
                "its own memory may be what was lost)",
                **evidence,
            )
        return passed(
            self.name,
            subject,
            f"no stale page in {load.passes_after - load.passes_before} pass(es)",
            **evidence,
        )


class WriteoutGap:
    name = "writeout-gap"
    description = "writeout.sh's time lines go on, with a gap the downtime explains"

    def judge(self, hop: HopObservation) -> CheckResult:
        w = hop.writeout
        if w is None:
            return failed(self.name, hop.subject, "writeout was not observed")
        allowed = writeout_allowance(w.downtime_ms)
        evidence: dict[str, Json] = {
            "last_on_source": w.last_on_source,
            "first_on_destination": w.first_on_destination,
            "lines_after": w.lines_after,
            "allowed_seconds": round(allowed, 3),
        }
        if w.last_on_source is None:
            return failed(
                self.name, hop.subject, "no time line on the source's console", **evidence
            )
        if w.first_on_destination is None or w.lines_after == 0:
            return failed(
                self.name, hop.subject, f"no time line on {hop.destination}'s console", **evidence
            )
        gap = w.first_on_destination - w.last_on_source
        evidence["gap_seconds"] = gap
        if not w.monotonic:
            return failed(self.name, hop.subject, "the guest's time went backwards", **evidence)
        if not 0 <= gap <= allowed:
            return failed(
                self.name,
                hop.subject,
                f"gap of {gap} s between the last line on {hop.source} and the first "
                f"on {hop.destination} (allowed {allowed:.1f} s)",
                **evidence,
            )
        evidence["largest_step"] = w.largest_step
        if w.largest_step is not None and w.largest_step > MAX_STEP_SECONDS:
            return failed(
                self.name,
                hop.subject,
                f"the guest's clock jumped {w.largest_step} s between two lines on "
                f"{hop.destination} (writeout prints every second)",
                **evidence,
            )
        return passed(self.name, hop.subject, f"gap {gap} s (allowed {allowed:.1f} s)", **evidence)


def _net_evidence(net: NetworkObservation) -> dict[str, Json]:
    return {
        "outage_ms": outage_ms(net),
        "switch_to_reply_ms": switch_to_reply_ms(net),
        "switch_kernel_ms": net.switch_kernel_ms,
        "old_board": net.old_board,
        "old_route_sent": net.old_route_sent,
        "old_route_replies": net.old_route_replies,
    }


class UnreachableBeforeSwitch:
    name = "unreachable-before-switch"
    description = (
        "the migrated guest does not answer through the NFS server's old route "
        "(an answer: the source guest still runs)"
    )

    def judge(self, hop: HopObservation) -> CheckResult:
        net = hop.network
        if net is None:
            return failed(self.name, hop.subject, "the network was not observed")
        evidence = _net_evidence(net)
        if net.old_route_sent == 0:
            return failed(
                self.name, hop.subject, "no probe through the old route was sent", **evidence
            )
        if net.old_route_replies:
            return failed(
                self.name,
                hop.subject,
                f"the guest answered {net.old_route_replies} of {net.old_route_sent} "
                f"echo requests through {net.old_board} after the migration: the "
                "source guest still runs (split brain)",
                **evidence,
            )
        return passed(
            self.name,
            hop.subject,
            f"0 of {net.old_route_sent} echo requests answered through {net.old_board}",
            **evidence,
        )


class ReachableAfterSwitch:
    name = "reachable-after-switch"
    description = "after the route switch the NFS server reaches the guest"

    def judge(self, hop: HopObservation) -> CheckResult:
        net = hop.network
        if net is None:
            return failed(self.name, hop.subject, "the network was not observed")
        evidence = _net_evidence(net)
        if net.switched_at is None:
            return failed(
                self.name,
                hop.subject,
                f"the NFS server's route was not switched to {hop.destination}",
                **evidence,
            )
        if net.first_reply_at is None:
            switched = (
                "after the route switch" if net.switched_at else "(the route was not switched)"
            )
            return failed(
                self.name,
                hop.subject,
                f"the NFS server cannot reach the guest on {hop.destination} {switched}",
                **evidence,
            )
        return passed(
            self.name,
            hop.subject,
            f"first reply {switch_to_reply_ms(net)} ms after the switch, outage "
            f"{outage_ms(net)} ms",
            **evidence,
        )


class MigrationCompleted:
    name = "migration-completed"
    description = "the migration completed (a failed attempt that a retry made good passes)"

    def judge(self, attempts: list[HopObservation]) -> CheckResult:
        last = attempts[-1]
        subject = f"migration {last.index + 1} ({last.source} -> {last.destination})"
        tried: list[Json] = [_why(a) for a in attempts if not a.completed]
        evidence: dict[str, Json] = {"attempts": len(attempts), "failed_attempts": tried}
        if last.completed:
            note = f" after {len(tried)} failed attempt(s)" if tried else ""
            return passed(self.name, subject, f"completed{note}", **evidence)
        return failed(self.name, subject, _why(last), **evidence)


def _why(hop: HopObservation) -> str:
    if hop.fault:
        return hop.fault
    m = hop.migration
    if m is None:
        return "the migration did not start"
    return f"{m.status}: {m.error}" if m.error else m.status


class SourceIntact:
    name = "source-intact"
    description = "after a failed migration the source guest runs on without a stale page"

    def judge(self, hop: HopObservation) -> CheckResult:
        src = hop.source_after_failure
        subject = f"{hop.subject}: source {hop.source}"
        if src is None:
            return failed(self.name, subject, "the source guest was not observed")
        evidence: dict[str, Json] = {"status": src.status, "stale": src.stale, "passes": src.passes}
        if src.status != "running":
            return failed(self.name, subject, f"the source guest is {src.status}", **evidence)
        if src.stale is None:
            return failed(
                self.name, subject, "the source guest's loads printed no status", **evidence
            )
        if src.stale:
            return failed(
                self.name, subject, f"the source guest found {src.stale} stale page(s)", **evidence
            )
        return passed(self.name, subject, "running, no stale page", **evidence)


class E2fsck:
    name = "e2fsck"
    description = "e2fsck -fn of the root disk on the NFS server is clean after power-off"

    def judge(self, disk: DiskObservation | None) -> CheckResult:
        if disk is None or disk.fsck_exit is None:
            return failed(self.name, "root disk", "e2fsck did not run")
        evidence: dict[str, Json] = {"exit": disk.fsck_exit, "output": list(disk.fsck_output)}
        if disk.fsck_exit != 0:
            detail = next((line for line in disk.fsck_output if line.strip()), "")
            return failed(
                self.name,
                "root disk",
                f"e2fsck -fn exit {disk.fsck_exit}: {detail[:160]}",
                **evidence,
            )
        return passed(self.name, "root disk", "clean", **evidence)


class LoadsFinal:
    name = "loads-final"
    description = "every load's own summary at the end says PASS"

    def judge(self, load: FinalLoad) -> CheckResult:
        subject = f"load {load.ident}"
        evidence: dict[str, Json] = {"result": load.result, "stale": load.stale}
        if load.result is None:
            return failed(self.name, subject, "the load printed no summary", **evidence)
        if load.result != "PASS":
            return failed(
                self.name, subject, f"found {load.stale} stale page(s) in the whole run", **evidence
            )
        return passed(self.name, subject, "PASS", **evidence)


class RunFault:
    name = "procedure"
    description = "the procedure ran to its end"

    def judge(self, fault: str) -> CheckResult:
        return failed(self.name, "procedure", fault)


CHECKS = (
    RamPages,
    LoadStale,
    WriteoutGap,
    UnreachableBeforeSwitch,
    ReachableAfterSwitch,
    MigrationCompleted,
    SourceIntact,
    E2fsck,
    LoadsFinal,
    RunFault,
)


def judge(obs: MigrationObservations) -> list[CheckResult]:
    """Every check's result, in the order of the procedure."""
    results: list[CheckResult] = []
    by_index: dict[int, list[HopObservation]] = {}
    for hop in obs.hops:
        by_index.setdefault(hop.index, []).append(hop)
    for index in sorted(by_index):
        attempts = by_index[index]
        results.append(MigrationCompleted().judge(attempts))
        for hop in attempts:
            if not hop.completed:
                if hop.source_after_failure is not None or hop is attempts[-1]:
                    results.append(SourceIntact().judge(hop))
                continue
            results.append(RamPages().judge(hop))
            results.append(UnreachableBeforeSwitch().judge(hop))
            results.append(ReachableAfterSwitch().judge(hop))
            for load in hop.loads:
                results.append(LoadStale().judge(hop, load))
            results.append(WriteoutGap().judge(hop))
    if obs.fault:
        results.append(RunFault().judge(obs.fault))
    if obs.kept_running:
        results.append(skipped(E2fsck.name, "root disk", "the guest was kept running (--keep)"))
        return results
    for final in obs.final_loads:
        results.append(LoadsFinal().judge(final))
    if obs.disk is not None or not obs.fault:
        results.append(E2fsck().judge(obs.disk))
    return results
