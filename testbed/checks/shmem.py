"""The shared-memory replication procedure's observations and checks (pure).

* ``qemu-alive``: QEMU ran to the end (a crash, such as QEMU 10.0.2's
  ``tlb_reset_dirty_range_all`` abort, fails it with QEMU's last words);
* ``replication-completed``: the daemon delivered its result (a daemon or a receiving
  board that died fails it, named);
* ``checkpoint``: at every convergence, while QEMU had the VM paused, the destination
  equalled the region page by page (one result per checkpoint);
* ``final-identity``: the last checkpoint, after the guest program stopped, is exact;
* ``sum-r``: the seed's own check, ``sum -r`` of region and destination agree;
* ``guest-checksum``: the guest's own ``sum -r`` of the device memory agrees with the
  host's at the final checkpoint (an output that does not parse fails; under KVM a
  difference means the host's cached view was stale: incoherence, reported);
* ``vm-resumed``: the VM runs after the replication, as the daemon left it and as the
  host's own query-status sees it."""

from __future__ import annotations

from dataclasses import dataclass

from testbed import codec
from testbed.checks.base import CheckResult, failed, passed
from testbed.codec import Json
from testbed.node.replica_diff import WORDS, ReplicaPageDiff
from testbed.node.replicate import Checkpoint, ReplicationReport


@dataclass(frozen=True)
class ShmemObservations:
    report: ReplicationReport | None
    qemu_alive: bool
    qemu_last_words: str  # the last lines of QEMU's log when it exited
    guest_sum_output: str | None  # what `tstaeshm sum` printed (None: not run)
    guest_sum: str | None  # "CHECKSUM BLOCKS" parsed from it
    fault: str | None = None
    accel: str = "tcg"
    vm_status: str | None = None  # query-status, asked by the host after the daemon ended


def _cp_subject(cp: Checkpoint) -> str:
    return f"checkpoint {cp.epoch}" + (" (final)" if cp.final else "")


class QemuAlive:
    name = "qemu-alive"
    description = "QEMU ran to the end of the replication"

    def judge(self, obs: ShmemObservations) -> CheckResult:
        if obs.qemu_alive:
            return passed(self.name, "QEMU", "running")
        return failed(
            self.name, "QEMU", f"QEMU exited: {obs.qemu_last_words}", last_words=obs.qemu_last_words
        )


class ReplicationCompleted:
    name = "replication-completed"
    description = "the replication daemon ran to its end and delivered its result"

    def judge(self, obs: ShmemObservations) -> CheckResult:
        if obs.report is not None and obs.fault is None:
            r = obs.report
            return passed(
                self.name,
                "daemon",
                f"{r.epochs} epochs, {r.rounds} sync rounds, stopped: {r.stop_reason}",
                epochs=r.epochs,
                rounds=r.rounds,
            )
        return failed(self.name, "daemon", obs.fault or "the daemon ended without a result")


def tstaeshm_write(word: str, page: int, index: int) -> int:
    """The write number that word ``index`` of ``page`` holds: tstaeshm fills word i of a
    page with (write << 24) ^ (page << 12) ^ i (images/guest/tstaeshm.c)."""
    return (int(word, 16) ^ (page << 12) ^ index) >> 24


# What a checkpoint says when every page that differs was sent while the guest wrote it and
# never again (the known defect tcg-shmem-write-in-flight-10.0 requires it in every
# failure)
SENT_MID_WRITE = "sent while the guest wrote it and not again"


def sent_mid_write(diff: ReplicaPageDiff) -> bool:
    """The replica got the page while the guest was writing it, and never again: the region
    holds one write throughout, the replica holds it in the page's first words and one
    older write in all the others, from the first differing word to the page's end."""
    first = diff.first_differing
    if not first or diff.last_differing != WORDS - 1 or diff.words_differing != WORDS - first:
        return False
    region = {tstaeshm_write(w.region, diff.page, w.index) for w in diff.words}
    newer = tstaeshm_write(diff.word(first).region, diff.page, first)
    older = {tstaeshm_write(diff.word(i).replica, diff.page, i) for i in (first, WORDS - 1)}
    return region == {newer} and len(older) == 1 and min(older) < newer


def describe_diff(diff: ReplicaPageDiff) -> str:
    """Which of the page's words differ, and tstaeshm's write numbers on each side there."""
    if diff.first_differing is None:
        return (
            f"page {diff.page}: the daemon gave the replica the region's words; the "
            "destination holds others"
        )
    indexes = [w.index for w in diff.words]

    def writes(side: str) -> str:
        return ", ".join(
            f"#{tstaeshm_write(getattr(w, side), diff.page, w.index)}" for w in diff.words
        )

    return (
        f"page {diff.page}: words {diff.first_differing} to {diff.last_differing} differ "
        f"({diff.words_differing} of {WORDS}); tstaeshm writes at words "
        f"{', '.join(map(str, indexes))}: region {writes('region')}; replica {writes('replica')}"
    )


class CheckpointExact:
    name = "checkpoint"
    description = "at a convergence (VM paused) the destination equals the region"

    def judge(self, cp: Checkpoint) -> CheckResult:
        evidence: dict[str, Json] = {
            "epoch": cp.epoch,
            "final": cp.final,
            "differing_pages": list(cp.differing_pages[:256]),
            "vm_status": cp.vm_status,
            "qemu_pages": cp.qemu_pages,
            "stream_pages": cp.stream_pages,
        }
        if cp.exact:
            return passed(self.name, _cp_subject(cp), "destination equals the region", **evidence)
        evidence["page_diffs"] = [codec.to_json(d) for d in cp.page_diffs]
        summary = f"{len(cp.differing_pages)} page(s) differ: {cp.differing_pages[:16]}"
        if cp.page_diffs:
            summary += f"; {describe_diff(cp.page_diffs[0])}"
        every_page_diffed = len(cp.page_diffs) == len(cp.differing_pages)
        if every_page_diffed and all(sent_mid_write(d) for d in cp.page_diffs):
            summary += f"; {'the page was' if len(cp.page_diffs) == 1 else 'each was'} "
            summary += SENT_MID_WRITE
        if cp.qemu_pages is not None and cp.qemu_pages != cp.stream_pages:
            summary += (
                f"; the daemon read {cp.stream_pages} pages of the epoch's stream, QEMU "
                f"counted {cp.qemu_pages} sent"
            )
        return failed(self.name, _cp_subject(cp), summary, **evidence)


class FinalIdentity:
    name = "final-identity"
    description = "after the guest program stopped, the last checkpoint is exact"

    def judge(self, report: ReplicationReport) -> CheckResult:
        final = report.final
        if final is None:
            return failed(self.name, "final", "no final checkpoint")
        if not final.exact:
            return failed(
                self.name,
                "final",
                f"{len(final.differing_pages)} page(s) differ at the end: "
                f"{final.differing_pages[:16]}",
                differing_pages=list(final.differing_pages[:256]),
            )
        return passed(self.name, "final", "destination identical to the region")


class SumR:
    name = "sum-r"
    description = "sum -r of region and destination agree at the end (the seed's check)"

    def judge(self, report: ReplicationReport) -> CheckResult:
        final = report.final
        if final is None:
            return failed(self.name, "final", "no final checkpoint")
        evidence: dict[str, Json] = {"src": final.sum_r_src, "dest": final.sum_r_dest}
        if final.sum_r_src.split() != final.sum_r_dest.split():
            return failed(
                self.name,
                "final",
                f"sum -r {final.sum_r_src} (region) vs {final.sum_r_dest} (destination)",
                **evidence,
            )
        return passed(self.name, "final", f"sum -r {final.sum_r_src} both", **evidence)


class GuestChecksum:
    name = "guest-checksum"
    description = "the guest's own sum -r of the device memory agrees with the host's"

    def judge(self, obs: ShmemObservations) -> CheckResult:
        report = obs.report
        host = report.final.sum_r_src if report and report.final else None
        evidence: dict[str, Json] = {
            "guest": obs.guest_sum,
            "host": host,
            "output": obs.guest_sum_output,
        }
        if host is None:
            return failed(self.name, "guest", "no host checksum to compare with", **evidence)
        if obs.guest_sum is None:
            return failed(
                self.name,
                "guest",
                f"the guest's checksum did not parse: {obs.guest_sum_output!r}"[:200],
                **evidence,
            )
        if obs.guest_sum.split() != host.split():
            why = (
                " (under KVM the host's cacheable view of device memory can be stale "
                "without FEAT_S2FWB: incoherence)"
                if obs.accel == "kvm"
                else ""
            )
            return failed(
                self.name,
                "guest",
                f"the guest's sum -r {obs.guest_sum} differs "
                f"from the host's {host} at the final checkpoint{why}",
                **evidence,
            )
        return passed(self.name, "guest", f"sum -r {obs.guest_sum} in guest and host", **evidence)


class VmResumed:
    name = "vm-resumed"
    description = "the VM runs after the replication: as the daemon saw it, and as the host sees it"

    def judge(self, obs: ShmemObservations) -> CheckResult:
        report = obs.report
        evidence: dict[str, Json] = {
            "daemon_saw_running": report.resumed if report else None,
            "host_sees": obs.vm_status,
        }
        if report is not None and not report.resumed:
            return failed(
                self.name, "VM", "the VM was not running after the daemon's last round", **evidence
            )
        if obs.vm_status is not None and obs.vm_status != "running":
            return failed(
                self.name,
                "VM",
                f"the VM is {obs.vm_status} after the replication ended "
                "(the daemon had left it running)",
                **evidence,
            )
        return passed(self.name, "VM", "running after the daemon's last round", **evidence)


CHECKS = (
    QemuAlive,
    ReplicationCompleted,
    CheckpointExact,
    FinalIdentity,
    SumR,
    GuestChecksum,
    VmResumed,
)


def judge(obs: ShmemObservations) -> list[CheckResult]:
    results = [QemuAlive().judge(obs), ReplicationCompleted().judge(obs)]
    report = obs.report
    if report is None:
        return results
    results += [CheckpointExact().judge(cp) for cp in report.all_checkpoints]
    results += [
        FinalIdentity().judge(report),
        SumR().judge(report),
        GuestChecksum().judge(obs),
        VmResumed().judge(obs),
    ]
    return results
