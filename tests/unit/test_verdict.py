"""The verdict (testbed.scenarios.common.decide) against the shipped known defects, a check
result's line, and the cleanup report's one-line summary."""

from __future__ import annotations

import pytest

from testbed.checks.base import CheckResult, VerdictKind, failed, passed, skipped
from testbed.checks.shmem import CheckpointExact
from testbed.cleanup import Removed
from testbed.cli.run import exit_code
from testbed.known_defects import load_defects
from testbed.matrix.records import Cell
from testbed.node.replica_diff import page_diff
from testbed.node.replicate import Checkpoint
from testbed.scenarios.common import CleanupReport, decide
from tests.unit.guest_programs import tstaeshm_page

DEFECTS = {d.id: d for d in load_defects()}
SHM_FIX = "tcg-dirty-sync-fastpath"
SHM_10 = "tcg-shmem-lost-writes-10.0"
IN_FLIGHT = "tcg-shmem-write-in-flight-10.0"
ABORT = "tcg-tlb-reset-dirty-range-all-abort"
HOT = "tcg-armv7-smp-hot-ram-loss-7.2"
ASSERTION = (
    "qemu-system-aarch64: ../system/physmem.c:1007: tlb_reset_dirty_range_all: Assertion "
    "`block == qemu_get_ram_block(end - 1)' failed."
)


def shmem_cell(load: str = "dirty", accel: str = "tcg", arch: str = "armv8") -> Cell:
    return Cell("shmem", "bookworm", arch, 1, load, accel)


def shmem_checks(*failing: str) -> list[CheckResult]:
    results = [
        passed("qemu-alive", "QEMU", "running"),
        passed("replication-completed", "daemon", "3 epochs"),
    ]
    for epoch in (1, 2, 3):
        if "checkpoint" in failing and epoch != 1:
            results.append(failed("checkpoint", f"checkpoint {epoch}", f"{epoch} page(s) differ"))
        else:
            results.append(passed("checkpoint", f"checkpoint {epoch}", "exact"))
    for name in ("final-identity", "sum-r", "guest-checksum", "vm-resumed"):
        if name in failing:
            results.append(failed(name, "final", f"{name} broke"))
        else:
            results.append(passed(name, "final", "ok"))
    return results


def test_the_entries_used_here_exist() -> None:
    assert {SHM_FIX, SHM_10, IN_FLIGHT, ABORT, HOT} <= set(DEFECTS)


# -- decide() ----------------------------------------------------------------------------------
def test_all_pass_is_pass() -> None:
    checks = shmem_checks()
    verdict = decide(checks, shmem_cell(), "7.2.22", "tcg")
    assert verdict.verdict is VerdictKind.PASS
    assert verdict.failures == [] and verdict.first_failure == ""
    assert verdict.known_defect is None
    assert verdict.checks == checks


def test_skipped_checks_do_not_fail() -> None:
    checks = [passed("ram-pages", "m1", "ok"), skipped("e2fsck", "root disk", "kept")]
    assert decide(checks, None, "", "tcg").verdict is VerdictKind.PASS


def test_failures_of_a_known_defect_make_known_defect() -> None:
    verdict = decide(shmem_checks("checkpoint"), shmem_cell(), "7.2.22", "tcg")
    assert verdict.verdict is VerdictKind.KNOWN_DEFECT
    ref = verdict.known_defect
    assert ref is not None
    assert ref.id == SHM_FIX
    assert ref.title == DEFECTS[SHM_FIX].title
    assert ref.fix == "03bfc2188f06 (9.0.0)"
    assert verdict.failures == [
        "checkpoint 2: checkpoint: 2 page(s) differ",
        "checkpoint 3: checkpoint: 3 page(s) differ",
    ]
    assert verdict.first_failure == "checkpoint 2: checkpoint: 2 page(s) differ"


def test_the_version_picks_the_entry() -> None:
    verdict = decide(shmem_checks("checkpoint"), shmem_cell(), "10.0.2", "tcg")
    assert verdict.verdict is VerdictKind.KNOWN_DEFECT
    assert verdict.known_defect is not None
    assert verdict.known_defect.id == SHM_10
    assert verdict.known_defect.fix is None  # no upstream fix known


def test_one_more_unrelated_failure_makes_fail() -> None:
    verdict = decide(shmem_checks("checkpoint", "sum-r"), shmem_cell(), "7.2.22", "tcg")
    assert verdict.verdict is VerdictKind.FAIL
    assert verdict.known_defect is None
    assert verdict.failures[-1] == "final: sum-r: sum-r broke"
    assert len(verdict.failures) == 3


@pytest.mark.parametrize(
    "cell, version, accel",
    [
        (shmem_cell(load="remap"), "7.2.22", "tcg"),  # remap is not the dirty loop
        (shmem_cell(), "7.2.22", "kvm"),  # the accel the run used, not the cell's
        (None, "7.2.22", "tcg"),  # no cell: nothing to match
        (shmem_cell(), "", "tcg"),  # QEMU version unknown
        (Cell("migration", "bookworm", "armv8", 1, "dirty", "tcg"), "7.2.22", "tcg"),
    ],
    ids=["remap", "kvm", "no cell", "no version", "other scenario"],
)
def test_a_failure_outside_the_entries_stays_fail(
    cell: Cell | None, version: str, accel: str
) -> None:
    verdict = decide(shmem_checks("checkpoint"), cell, version, accel)
    assert verdict.verdict is VerdictKind.FAIL
    assert verdict.known_defect is None


def test_the_resolved_accel_matches_an_auto_cell() -> None:
    verdict = decide(shmem_checks("checkpoint"), shmem_cell(accel="auto"), "7.2.22", "tcg")
    assert verdict.verdict is VerdictKind.KNOWN_DEFECT


def test_message_contains_is_required() -> None:
    crash = [
        failed("qemu-alive", "QEMU", f"QEMU exited: {ASSERTION}"),
        failed("replication-completed", "daemon", "the daemon ended without a result"),
    ]
    # the abort takes the daemon with it: both failures are the defect's
    verdict = decide(crash, shmem_cell(), "10.0.2", "tcg")
    assert verdict.verdict is VerdictKind.KNOWN_DEFECT
    assert verdict.known_defect is not None and verdict.known_defect.id == ABORT
    # a checkpoint failing as well is not what this defect does
    more = [*crash, failed("checkpoint", "checkpoint 2", "3 page(s) differ: [1, 2, 3]")]
    assert decide(more, shmem_cell(), "10.0.2", "tcg").verdict is VerdictKind.FAIL
    other = [failed("qemu-alive", "QEMU", "QEMU exited: Segmentation fault")]
    assert decide(other, shmem_cell(), "10.0.2", "tcg").verdict is VerdictKind.FAIL


def test_migration_entry_with_smp_and_load() -> None:
    cell = Cell("migration", "bookworm", "armv7", 2, "hot:256", "tcg")
    checks = [
        failed("ram-pages", "migration 1", "256 pages differ"),
        failed("load-stale", "migration 1, load hot", "256 stale"),
        passed("e2fsck", "root disk", "clean"),
    ]
    verdict = decide(checks, cell, "7.2.22", "tcg")
    assert verdict.verdict is VerdictKind.KNOWN_DEFECT
    assert verdict.known_defect is not None and verdict.known_defect.id == HOT
    smp1 = Cell("migration", "bookworm", "armv7", 1, "hot:256", "tcg")
    assert decide(checks, smp1, "7.2.22", "tcg").verdict is VerdictKind.FAIL


def test_defects_can_be_given() -> None:
    checks = shmem_checks("checkpoint")
    assert decide(checks, shmem_cell(), "7.2.22", "tcg", defects=[]).verdict is VerdictKind.FAIL
    verdict = decide(checks, shmem_cell(), "7.2.22", "tcg", defects=[DEFECTS[SHM_FIX]])
    assert verdict.verdict is VerdictKind.KNOWN_DEFECT


# -- CheckResult -------------------------------------------------------------------------------
def test_check_result_line() -> None:
    result = failed(
        "ram-pages", "migration 1 (gauss-a -> gauss-b)", "3 of 8 pages differ", pages=[1, 2, 3]
    )
    assert result.line() == "migration 1 (gauss-a -> gauss-b): ram-pages: 3 of 8 pages differ"
    assert result.failed
    assert result.evidence == {"pages": [1, 2, 3]}
    assert not passed("x", "y", "z").failed
    assert not skipped("x", "y", "z").failed


# -- CleanupReport -----------------------------------------------------------------------------
REMOVED = Removed(["lab-nfs", "lab-gauss-a", "lab-gauss-b"], ["lab-net"], ["lab-vol"])


@pytest.mark.parametrize(
    "report, summary",
    [
        (CleanupReport(), "nothing to stop or remove"),
        (
            CleanupReport(stopped=["QEMU 'guest' on gauss-a", "replicate on gauss-a"]),
            "stopped QEMU 'guest' on gauss-a, replicate on gauss-a",
        ),
        (
            CleanupReport(removed=REMOVED),
            "removed 3 container(s), 1 network(s), 1 volume(s) of the lab this run created",
        ),
        (
            CleanupReport(kept=["lab testbed", "the guest on gauss-b"]),
            "kept lab testbed, the guest on gauss-b",
        ),
        (
            CleanupReport(unreachable=["gauss-b"]),
            "could not reach gauss-b (their agents stop what this run started when the "
            "stream closes)",
        ),
        (
            CleanupReport(
                stopped=["QEMU 'guest' on gauss-a"],
                unreachable=["gauss-b", "nfs"],
                removed=None,
                kept=["lab testbed"],
            ),
            "stopped QEMU 'guest' on gauss-a; kept lab testbed; could not reach gauss-b, nfs "
            "(their agents stop what this run started when the stream closes)",
        ),
        (
            CleanupReport(stopped=["QEMU 'guest' on gauss-b"], removed=REMOVED),
            "stopped QEMU 'guest' on gauss-b; removed 3 container(s), 1 network(s), "
            "1 volume(s) of the lab this run created",
        ),
    ],
    ids=["nothing", "stopped", "removed", "kept", "unreachable", "mixed", "stopped+removed"],
)
def test_cleanup_summary(report: CleanupReport, summary: str) -> None:
    assert report.summary() == summary
    assert "\n" not in report.summary()


def test_cleanup_summary_when_the_created_lab_was_already_gone() -> None:
    summary = CleanupReport(removed=Removed()).summary()
    assert summary == "the lab this run created was gone already"


@pytest.mark.parametrize(
    ("verdict", "strict", "code"),
    [
        ("pass", False, 0),
        ("pass", True, 0),
        ("known-defect", False, 0),
        ("known-defect", True, 1),
        ("fail", False, 1),
        ("fail", True, 1),
    ],
)
def test_exit_code_of_a_verdict(verdict: str, strict: bool, code: int) -> None:
    """A known defect exits 0 unless --strict; end to end, test_shmem_faults.py shows both."""
    assert exit_code(verdict, strict) == code


def inexact(epoch: int, page: int, sent_mid_write: bool) -> CheckResult:
    """The real judge's result on a checkpoint of a remap run where ``page`` differed: sent
    while the guest wrote it (words 317 on hold the write before), or wholly stale."""
    region = tstaeshm_page(page, [11613] * 512)
    writes = [11613] * 317 + [11530] * 195 if sent_mid_write else [11530] * 512
    diff = page_diff(page, region, tstaeshm_page(page, writes))
    cp = Checkpoint(epoch, False, False, [page], "1 1024", "2 1024", "postmigrate", 9, 9, [diff])
    return CheckpointExact().judge(cp)


def remap_checks(*checkpoints: CheckResult) -> list[CheckResult]:
    """shmem_checks() with its checkpoints 2 and 3 replaced by these (inexact) ones."""
    kept = [r for r in shmem_checks() if r.subject not in ("checkpoint 2", "checkpoint 3")]
    return kept + list(checkpoints)


@pytest.mark.parametrize(
    ("arch", "version", "checkpoints", "verdict"),
    [
        ("armv7", "10.0.2", [(4, 41, True)], VerdictKind.KNOWN_DEFECT),
        ("armv7", "10.0.2", [(4, 41, True), (6, 107, True)], VerdictKind.KNOWN_DEFECT),
        ("armv7", "10.0.2", [(4, 41, False)], VerdictKind.FAIL),  # another shape: a new loss
        # one checkpoint of that shape does not excuse another of a different one
        ("armv7", "10.0.2", [(4, 41, True), (6, 107, False)], VerdictKind.FAIL),
        ("armv8", "10.0.2", [(4, 41, True)], VerdictKind.FAIL),  # only armv7 was measured
        ("armv7", "7.2.22", [(4, 41, True)], VerdictKind.FAIL),  # only 10.0 was measured
    ],
)
def test_a_remap_page_sent_mid_write_is_known_on_armv7_10_0_only(
    arch: str, version: str, checkpoints: list[tuple[int, int, bool]], verdict: VerdictKind
) -> None:
    checks = remap_checks(*(inexact(*cp) for cp in checkpoints))
    decided = decide(checks, shmem_cell("remap", arch=arch), version, "tcg")
    assert decided.verdict is verdict, decided.failures
    if verdict is VerdictKind.KNOWN_DEFECT:
        assert decided.known_defect is not None and decided.known_defect.id == IN_FLIGHT
