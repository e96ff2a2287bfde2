"""testbed.checks.shmem: every check of the shared-memory replication passes on a good
observation and fails, saying why, on every bad one; judge() assembles them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from testbed import codec
from testbed.checks import shmem
from testbed.checks.base import CheckResult, Outcome
from testbed.checks.shmem import (
    CheckpointExact,
    FinalIdentity,
    GuestChecksum,
    QemuAlive,
    ReplicationCompleted,
    ShmemObservations,
    SumR,
    VmResumed,
)
from testbed.node.replica_diff import ReplicaPageDiff, page_diff
from testbed.node.replicate import Checkpoint, ReplicationReport
from tests.unit.guest_programs import tstaeshm_page

ABORT = (
    "qemu-system-aarch64: ../system/physmem.c:1007: tlb_reset_dirty_range_all: Assertion "
    "`block == qemu_get_ram_block(end - 1)' failed."
)


def checkpoint(
    epoch: int,
    final: bool = False,
    differing: list[int] | None = None,
    src: str = "12345 1024",
    dest: str | None = None,
) -> Checkpoint:
    return Checkpoint(
        epoch=epoch,
        final=final,
        exact=not differing,
        differing_pages=differing or [],
        sum_r_src=src,
        sum_r_dest=src if dest is None else dest,
        vm_status="paused",
    )


def report(checkpoints: list[Checkpoint] | None = None, resumed: bool = True) -> ReplicationReport:
    cps = (
        [checkpoint(1), checkpoint(2), checkpoint(3, final=True)]
        if checkpoints is None
        else checkpoints
    )
    final = next((cp for cp in cps if cp.final), None)
    return ReplicationReport(
        qemu_version="10.0.2",
        block="/objects/shm",
        region_bytes=1 << 20,
        epochs=3,
        rounds=42,
        checkpoints=len(cps),
        inexact=[cp for cp in cps if not cp.exact],
        all_checkpoints=cps,
        final=final,
        stop_reason="guest quiet",
        resumed=resumed,
    )


def observations(rep: ReplicationReport | None = None, **changes: object) -> ShmemObservations:
    good = ShmemObservations(
        report=report() if rep is None else rep,
        qemu_alive=True,
        qemu_last_words="",
        guest_sum_output="12345 1024\n",
        guest_sum="12345 1024",
    )
    return replace(good, **changes)  # type: ignore[arg-type]


def assert_pass(result: CheckResult, check: str) -> None:
    assert result.check == check
    assert result.outcome is Outcome.PASS, result.line()


def assert_fail(result: CheckResult, check: str, *words: str) -> None:
    assert result.check == check
    assert result.outcome is Outcome.FAIL, result.line()
    assert "\n" not in result.summary
    for word in words:
        assert word in result.summary, (word, result.summary)


def test_the_check_catalogue() -> None:
    assert [c.name for c in shmem.CHECKS] == [
        "qemu-alive",
        "replication-completed",
        "checkpoint",
        "final-identity",
        "sum-r",
        "guest-checksum",
        "vm-resumed",
    ]


# -- qemu-alive, replication-completed ---------------------------------------------------------
def test_qemu_alive() -> None:
    assert_pass(QemuAlive().judge(observations()), "qemu-alive")
    result = QemuAlive().judge(observations(qemu_alive=False, qemu_last_words=ABORT))
    assert_fail(result, "qemu-alive", "QEMU exited", "tlb_reset_dirty_range_all")
    assert result.evidence["last_words"] == ABORT


def test_replication_completed() -> None:
    result = ReplicationCompleted().judge(observations())
    assert_pass(result, "replication-completed")
    assert result.summary == "3 epochs, 42 sync rounds, stopped: guest quiet"
    assert result.evidence == {"epochs": 3, "rounds": 42}


def test_replication_completed_fails_with_the_fault() -> None:
    fault = "receiver on gauss-b died during replication: container exited 137"
    assert_fail(
        ReplicationCompleted().judge(observations(fault=fault)), "replication-completed", fault
    )
    # a fault fails it even when a report came
    assert ReplicationCompleted().judge(observations(report(), fault=fault)).failed


def test_replication_completed_without_a_report_fails() -> None:
    result = ReplicationCompleted().judge(replace(observations(), report=None))
    assert_fail(result, "replication-completed", "without a result")


# -- checkpoint, final-identity, sum-r ---------------------------------------------------------
def test_checkpoint_exact() -> None:
    result = CheckpointExact().judge(checkpoint(4))
    assert_pass(result, "checkpoint")
    assert result.subject == "checkpoint 4"
    assert CheckpointExact().judge(checkpoint(9, final=True)).subject == "checkpoint 9 (final)"


def test_checkpoint_inexact_names_the_pages() -> None:
    result = CheckpointExact().judge(checkpoint(4, differing=[3, 250]))
    assert_fail(result, "checkpoint", "2 page(s) differ", "[3, 250]")
    assert result.evidence["differing_pages"] == [3, 250]
    assert result.evidence["epoch"] == 4


MID_WRITE = ([4502] * 512, [4502] * 300 + [4410] * 212)  # region, replica: writes per word


def diffed(page: int, writes: tuple[list[int], list[int]]) -> ReplicaPageDiff:
    region, replica = writes
    return page_diff(page, tstaeshm_page(page, region), tstaeshm_page(page, replica))


def test_checkpoint_inexact_says_which_write_each_side_holds() -> None:
    """The page was sent while the guest wrote it, and not again: the replica's words from
    300 on hold an older write than the region's."""
    cp = replace(
        checkpoint(9, differing=[13]),
        qemu_pages=2345,
        stream_pages=2345,
        page_diffs=[diffed(13, MID_WRITE)],
    )
    result = CheckpointExact().judge(cp)
    assert_fail(
        result,
        "checkpoint",
        "1 page(s) differ: [13]; page 13: words 300 to 511 differ (212 of 512); tstaeshm "
        "writes at words 0, 300, 511: region #4502, #4502, #4502; replica #4502, #4410, "
        "#4410; the page was sent while the guest wrote it and not again",
    )
    assert "daemon read" not in result.summary  # it read what QEMU sent
    assert result.evidence["qemu_pages"] == result.evidence["stream_pages"] == 2345
    assert result.evidence["page_diffs"] == [codec.to_json(diffed(13, MID_WRITE))]


@pytest.mark.parametrize(
    "writes",
    [
        ([4502] * 512, [4410] * 512),  # the whole page is an older write
        ([4502] * 300 + [4410] * 212, [4502] * 100 + [4410] * 412),  # the region is mid-write
        ([4502] * 512, [4502] * 300 + [4600] * 212),  # the replica's rest is newer
        ([4502] * 512, [4502] * 300 + [4410] + [4502] * 211),  # one older word in the middle
        ([4502] * 512, [4502] * 300 + [4410] * 100 + [4400] * 112),  # two older writes
        ([4502] * 512, [4502] * 512),  # equal as given: the destination differs
    ],
)
def test_a_page_diff_of_another_shape_is_not_said_sent_mid_write(
    writes: tuple[list[int], list[int]],
) -> None:
    diff = diffed(13, writes)
    assert not shmem.sent_mid_write(diff)
    cp = replace(checkpoint(9, differing=[13]), page_diffs=[diff])
    result = CheckpointExact().judge(cp)
    assert_fail(result, "checkpoint", "page 13:")
    assert shmem.SENT_MID_WRITE not in result.summary


def test_an_equal_page_as_given_says_the_destination_differs() -> None:
    cp = replace(checkpoint(9, differing=[13]), page_diffs=[diffed(13, ([7] * 512, [7] * 512))])
    assert_fail(
        CheckpointExact().judge(cp),
        "checkpoint",
        "page 13: the daemon gave the replica the region's words; the destination holds others",
    )


def test_sent_mid_write_is_said_only_when_every_differing_page_is_so() -> None:
    other = diffed(14, ([4502] * 512, [4410] * 512))
    two = replace(checkpoint(9, differing=[13, 14]), page_diffs=[diffed(13, MID_WRITE), other])
    assert shmem.SENT_MID_WRITE not in CheckpointExact().judge(two).summary
    both = replace(two, page_diffs=[diffed(13, MID_WRITE), diffed(14, MID_WRITE)])
    assert_fail(CheckpointExact().judge(both), "checkpoint", "; each was sent while the guest")
    # more pages differ than were diffed (MAX_PAGE_DIFFS): the rest are of unknown shape
    many = replace(checkpoint(9, differing=list(range(20))), page_diffs=[diffed(0, MID_WRITE)])
    assert shmem.SENT_MID_WRITE not in CheckpointExact().judge(many).summary


def test_checkpoint_says_when_the_daemon_read_less_than_qemu_sent() -> None:
    cp = replace(checkpoint(9, differing=[13]), qemu_pages=2345, stream_pages=2344)
    assert_fail(
        CheckpointExact().judge(cp),
        "checkpoint",
        "the daemon read 2344 pages of the epoch's stream, QEMU counted 2345 sent",
    )


def test_final_identity() -> None:
    assert_pass(FinalIdentity().judge(report()), "final-identity")
    bad = report([checkpoint(1), checkpoint(2, final=True, differing=[7])])
    assert_fail(FinalIdentity().judge(bad), "final-identity", "1 page(s) differ at the end", "[7]")
    assert_fail(
        FinalIdentity().judge(report([checkpoint(1)])), "final-identity", "no final checkpoint"
    )


def test_sum_r() -> None:
    result = SumR().judge(report())
    assert_pass(result, "sum-r")
    assert result.summary == "sum -r 12345 1024 both"
    # the spacing of sum's output does not matter, the numbers do
    spaced = report([checkpoint(1, final=True, src="12345 1024", dest="12345    1024")])
    assert_pass(SumR().judge(spaced), "sum-r")
    bad = report([checkpoint(1, final=True, src="12345 1024", dest="54321 1024")])
    assert_fail(SumR().judge(bad), "sum-r", "12345 1024 (region)", "54321 1024 (destination)")
    assert_fail(SumR().judge(report([checkpoint(1)])), "sum-r", "no final checkpoint")


# -- guest-checksum ----------------------------------------------------------------------------
def test_guest_checksum_pass() -> None:
    result = GuestChecksum().judge(observations())
    assert_pass(result, "guest-checksum")
    assert result.summary == "sum -r 12345 1024 in guest and host"


def test_guest_checksum_unparseable_output_fails_not_skipped() -> None:
    result = GuestChecksum().judge(
        observations(guest_sum_output="tstaeshm: cannot open BAR2\nusage: ...", guest_sum=None)
    )
    assert_fail(result, "guest-checksum", "did not parse", "cannot open BAR2")
    assert result.outcome is not Outcome.SKIPPED


def test_guest_checksum_difference_fails() -> None:
    result = GuestChecksum().judge(observations(guest_sum="11111 1024"))
    assert_fail(result, "guest-checksum", "11111 1024", "12345 1024", "final checkpoint")
    assert "incoherence" not in result.summary


def test_guest_checksum_difference_under_kvm_says_incoherence() -> None:
    result = GuestChecksum().judge(observations(guest_sum="11111 1024", accel="kvm"))
    assert_fail(result, "guest-checksum", "incoherence", "KVM")


@pytest.mark.parametrize("rep", [None, report([checkpoint(1)])], ids=["no report", "no final"])
def test_guest_checksum_without_a_host_checksum_fails(rep: ReplicationReport | None) -> None:
    obs = replace(observations(), report=rep)
    assert_fail(GuestChecksum().judge(obs), "guest-checksum", "no host checksum")


# -- vm-resumed --------------------------------------------------------------------------------
def test_vm_resumed() -> None:
    assert_pass(VmResumed().judge(observations()), "vm-resumed")
    assert_pass(VmResumed().judge(replace(observations(), vm_status="running")), "vm-resumed")
    not_resumed = replace(observations(), report=report(resumed=False))
    assert_fail(VmResumed().judge(not_resumed), "vm-resumed", "not running after the daemon")


@pytest.mark.parametrize("status", ["paused", "postmigrate", "internal-error"])
def test_vm_resumed_fails_when_the_host_sees_it_stopped(status: str) -> None:
    obs = replace(observations(), vm_status=status)
    result = VmResumed().judge(obs)
    assert_fail(result, "vm-resumed", f"the VM is {status} after the replication ended")
    assert result.evidence["host_sees"] == status


# -- judge() -----------------------------------------------------------------------------------
def names(results: list[CheckResult]) -> list[tuple[str, str, str]]:
    return [(r.check, r.subject, r.outcome.value) for r in results]


def test_judge_all_good() -> None:
    assert names(shmem.judge(observations())) == [
        ("qemu-alive", "QEMU", "pass"),
        ("replication-completed", "daemon", "pass"),
        ("checkpoint", "checkpoint 1", "pass"),
        ("checkpoint", "checkpoint 2", "pass"),
        ("checkpoint", "checkpoint 3 (final)", "pass"),
        ("final-identity", "final", "pass"),
        ("sum-r", "final", "pass"),
        ("guest-checksum", "guest", "pass"),
        ("vm-resumed", "VM", "pass"),
    ]


def test_judge_one_result_per_checkpoint() -> None:
    cps = [
        checkpoint(1),
        checkpoint(2, differing=[5]),
        checkpoint(3, differing=[6, 7]),
        checkpoint(4, final=True),
    ]
    results = shmem.judge(observations(report(cps)))
    checkpoints = [(r.subject, r.outcome.value) for r in results if r.check == "checkpoint"]
    assert checkpoints == [
        ("checkpoint 1", "pass"),
        ("checkpoint 2", "fail"),
        ("checkpoint 3", "fail"),
        ("checkpoint 4 (final)", "pass"),
    ]
    assert {r.check for r in results if r.failed} == {"checkpoint"}


def test_judge_with_report_none() -> None:
    obs = ShmemObservations(None, False, ABORT, None, None, fault="QEMU on gauss-a died")
    assert names(shmem.judge(obs)) == [
        ("qemu-alive", "QEMU", "fail"),
        ("replication-completed", "daemon", "fail"),
    ]
