"""testbed.checks.migration: every check passes on a good observation and fails, with a
message that says what went wrong, on every bad one; judge() assembles them in the order
of the procedure."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from testbed.checks import migration as mig
from testbed.checks.base import CheckResult, Outcome
from testbed.checks.migration import (
    DiskObservation,
    E2fsck,
    FinalLoad,
    HopObservation,
    LoadObservation,
    LoadsFinal,
    LoadStale,
    MemoryObservation,
    MigrationCompleted,
    MigrationObservations,
    NetworkObservation,
    PageDiff,
    RamPages,
    ReachableAfterSwitch,
    RunFault,
    SourceAfterFailure,
    SourceIntact,
    UnreachableBeforeSwitch,
    WriteoutGap,
    WriteoutObservation,
)
from testbed.protocol import MigrationOutcome

MAGICS = {"seed": 0x314D52595452494D, "hot": 0x31544F48444C4254}
K1 = 0x9E3779B97F4A7C15
K2 = 0xC2B2AE3D27D4EB4F


# -- observations ------------------------------------------------------------------------------
def outcome(status: str = "completed", error: str = "") -> MigrationOutcome:
    return MigrationOutcome(
        status=status,
        error=error,
        started_at=100.0,
        ended_at=103.0,
        stopped_at=102.9 if status == "completed" else None,
        total_ms=3000,
        downtime_ms=120,
        setup_ms=5,
        transferred_bytes=1 << 30,
        throughput_mbps=900.0,
        dirty_sync_count=4,
        dirty_pages_rate=100,
        normal_pages=1000,
        zero_pages=10,
        expected_downtime_ms=100,
        held_seconds=0.0,
        syncs_while_holding=0,
        events=[],
        samples=[],
    )


def memory(
    differing: list[int] | None = None,
    blocks: list[int] | None = None,
    details: list[PageDiff] | None = None,
) -> MemoryObservation:
    return MemoryObservation(131072, differing or [], blocks or [], details or [], [0.4, 0.5])


def load(
    ident: str = "dirtyram",
    stale_before: int = 0,
    stale_after: int = 0,
    passes_before: int = 3,
    passes_after: int = 5,
    stale_pages: list[str] | None = None,
) -> LoadObservation:
    return LoadObservation(
        ident,
        "seed",
        stale_before,
        stale_after,
        passes_before,
        passes_after,
        2048,
        stale_pages or [],
    )


def writeout(
    last: int | None = 1000,
    first: int | None = 1002,
    lines: int = 5,
    monotonic: bool = True,
    downtime_ms: int | None = 120,
    largest_step: int | None = None,
) -> WriteoutObservation:
    return WriteoutObservation(last, first, lines, monotonic, downtime_ms, largest_step)


def network(
    resumed: float | None = 200.0,
    switched: float | None = 200.5,
    first_reply: float | None = 200.52,
    sent: int = 100,
    replies: int = 0,
) -> NetworkObservation:
    return NetworkObservation(resumed, switched, first_reply, 0.3, "gauss-a", sent, replies)


def hop(
    index: int = 0, attempt: int = 1, migration: MigrationOutcome | None = None, **changes: object
) -> HopObservation:
    good = HopObservation(
        index=index,
        source="gauss-a" if index % 2 == 0 else "gauss-b",
        destination="gauss-b" if index % 2 == 0 else "gauss-a",
        attempt=attempt,
        migration=outcome() if migration is None else migration,
        memory=memory(),
        loads=[load()],
        writeout=writeout(),
        network=network(),
    )
    return replace(good, **changes)  # type: ignore[arg-type]


def failed_hop(
    attempt: int = 1,
    fault: str | None = None,
    status: str = "failed",
    error: str = "Unable to write to socket: Broken pipe",
    after: SourceAfterFailure | None = None,
) -> HopObservation:
    return HopObservation(
        index=0,
        source="gauss-a",
        destination="gauss-b",
        attempt=attempt,
        migration=outcome(status, error),
        fault=fault,
        source_after_failure=after,
    )


def final_loads() -> list[FinalLoad]:
    return [FinalLoad("dirtyram", "PASS", 0)]


def clean_disk() -> DiskObservation:
    return DiskObservation(0, ["e2fsck 1.47.0", "/dev/vda: 12/1024 files"])


def assert_pass(result: CheckResult, check: str) -> None:
    assert result.check == check
    assert result.outcome is Outcome.PASS, result.line()
    assert not result.failed


def assert_fail(result: CheckResult, check: str, *words: str) -> None:
    assert result.check == check
    assert result.outcome is Outcome.FAIL, result.line()
    assert result.failed
    assert "\n" not in result.summary
    for word in words:
        assert word in result.summary, (word, result.summary)


# -- every check class is covered --------------------------------------------------------------
def test_the_check_catalogue() -> None:
    assert [c.name for c in mig.CHECKS] == [
        "ram-pages",
        "load-stale",
        "writeout-gap",
        "unreachable-before-switch",
        "reachable-after-switch",
        "migration-completed",
        "source-intact",
        "e2fsck",
        "loads-final",
        "procedure",
    ]
    for check in mig.CHECKS:
        assert check.description and "\n" not in check.description


# -- pure helpers ------------------------------------------------------------------------------
def stamp(magic: int, page: int, counter: int, check: int | None = None) -> bytes:
    if check is None:
        check = (magic ^ (page * K1) ^ (counter * K2)) % 2**64
    return struct.pack("<4Q", magic, page, counter, check)


def test_decode_stamp() -> None:
    assert mig.decode_stamp(stamp(MAGICS["seed"], 12, 345), MAGICS) == "seed page=12 counter=345"
    assert mig.decode_stamp(stamp(MAGICS["hot"], 0, 1) + b"tail", MAGICS) == "hot page=0 counter=1"
    assert mig.decode_stamp(stamp(0x1234, 12, 345), MAGICS) is None  # no load's magic
    assert mig.decode_stamp(stamp(MAGICS["seed"], 1, 2)[:31], MAGICS) is None  # too short
    assert mig.decode_stamp(b"\0" * 32, MAGICS) is None


@pytest.mark.parametrize("page, counter", [(12, 345), (0, 1), (2**40, 2**63)])
def test_older_stamp_is_the_previous_counter_with_a_correct_check_word(
    page: int, counter: int
) -> None:
    magic = MAGICS["seed"]
    older = mig.older_stamp(stamp(magic, page, counter) + b"rest of the page", MAGICS)
    assert older is not None and len(older) == 32
    got_magic, got_page, got_counter, got_check = struct.unpack("<4Q", older)
    assert (got_magic, got_page, got_counter) == (magic, page, counter - 1)
    assert got_check == (magic ^ (page * K1) ^ ((counter - 1) * K2)) % 2**64
    assert older == stamp(magic, page, counter - 1)


def test_older_stamp_refuses_what_is_no_stamp() -> None:
    assert mig.older_stamp(stamp(MAGICS["hot"], 5, 0), MAGICS) is None  # no earlier write
    assert mig.older_stamp(stamp(0xDEAD, 5, 7), MAGICS) is None
    assert mig.older_stamp(stamp(MAGICS["hot"], 5, 7)[:16], MAGICS) is None


def test_outage_and_switch_to_reply() -> None:
    net = network(resumed=200.0, switched=200.5, first_reply=200.5234)
    assert mig.outage_ms(net) == 523.4
    assert mig.switch_to_reply_ms(net) == 23.4
    assert mig.outage_ms(network(resumed=None)) is None
    assert mig.outage_ms(network(first_reply=None)) is None
    assert mig.switch_to_reply_ms(network(switched=None)) is None
    assert mig.switch_to_reply_ms(network(first_reply=None)) is None


def test_writeout_allowance() -> None:
    assert mig.writeout_allowance(None) == 3.0
    assert mig.writeout_allowance(0) == 3.0
    assert mig.writeout_allowance(500) == 3.5
    assert mig.writeout_allowance(2000) == 5.0


# -- ram-pages ---------------------------------------------------------------------------------
def test_ram_pages_pass() -> None:
    result = RamPages().judge(hop())
    assert_pass(result, "ram-pages")
    assert result.summary == "131072 pages identical"
    assert result.subject == "migration 1 (gauss-a -> gauss-b)"
    assert result.evidence["pages_differing"] == 0


def test_ram_pages_differing_pages_name_the_pages_and_the_first_stamps() -> None:
    details = [
        PageDiff(70, "0x40046000", "seed page=3 counter=10", "seed page=3 counter=9"),
        PageDiff(900, "0x40384000", None, None),
    ]
    result = RamPages().judge(hop(memory=memory([70, 900], details=details)))
    assert_fail(
        result,
        "ram-pages",
        "2 of 131072 pages differ",
        "[70, 900]",
        "page 70 at 0x40046000",
        "source seed page=3 counter=10",
        "destination seed page=3 counter=9",
    )
    assert result.evidence["differing_pages"] == [70, 900]


def test_ram_pages_differing_page_without_stamps() -> None:
    details = [PageDiff(5, "0x40005000", None, None)]
    result = RamPages().judge(hop(memory=memory([5], details=details)))
    assert_fail(result, "ram-pages", "source no stamp, destination no stamp")


def test_ram_pages_differing_pages_without_details_still_fail() -> None:
    result = RamPages().judge(hop(memory=memory([1, 2, 3])))
    assert_fail(result, "ram-pages", "3 of 131072 pages differ", "[1, 2, 3]")


def test_ram_pages_lists_at_most_16_pages_in_the_summary() -> None:
    pages = list(range(100, 140))
    result = RamPages().judge(hop(memory=memory(pages)))
    assert_fail(result, "ram-pages", "40 of 131072", str(pages[:16]))
    assert str(pages[:17]) not in result.summary
    assert result.evidence["pages_differing"] == 40


def test_ram_pages_unlocalized_blocks_fail() -> None:
    result = RamPages().judge(hop(memory=memory(blocks=[3, 7])))
    assert_fail(result, "ram-pages", "[3, 7]", "no page CRC-32")
    assert result.evidence["unlocalized_blocks"] == [3, 7]


def test_ram_pages_not_compared_fails() -> None:
    assert_fail(RamPages().judge(hop(memory=None)), "ram-pages", "not compared")


# -- load-stale --------------------------------------------------------------------------------
def test_load_stale_pass() -> None:
    h = hop()
    result = LoadStale().judge(h, load(passes_before=3, passes_after=5))
    assert_pass(result, "load-stale")
    assert result.summary == "no stale page in 2 pass(es)"
    assert result.subject == "migration 1 (gauss-a -> gauss-b), load dirtyram"


def test_load_stale_new_stale_pages_fail() -> None:
    bad = load(stale_before=1, stale_after=4, stale_pages=["17", "33", "49"])
    result = LoadStale().judge(hop(), bad)
    assert_fail(result, "load-stale", "3 stale page(s) on gauss-b", "'17', '33', '49'")
    assert result.evidence["stale"] == 3


def test_load_stale_counts_only_the_new_stale_pages() -> None:
    assert_pass(LoadStale().judge(hop(), load(stale_before=2, stale_after=2)), "load-stale")


@pytest.mark.parametrize(("after", "done"), [(3, 0), (2, 0), (4, 1)])
def test_load_stale_without_its_passes_fails(after: int, done: int) -> None:
    """A load that stopped reporting on the destination (its own memory may be what was
    lost) has not checked its pages: that fails too."""
    result = LoadStale().judge(
        hop(), replace(load(passes_before=3, passes_after=after), passes_wanted=2)
    )
    assert_fail(result, "load-stale", f"the load completed {done} of 2 passes on gauss-b")


def test_load_stale_passes_after_the_wanted_passes() -> None:
    ok = replace(load(passes_before=3, passes_after=5), passes_wanted=2)
    assert_pass(LoadStale().judge(hop(), ok), "load-stale")


# -- writeout-gap ------------------------------------------------------------------------------
def test_writeout_gap_pass() -> None:
    result = WriteoutGap().judge(hop(writeout=writeout(1000, 1002, downtime_ms=120)))
    assert_pass(result, "writeout-gap")
    assert result.summary == "gap 2 s (allowed 3.1 s)"
    assert result.evidence["gap_seconds"] == 2


def test_writeout_gap_at_the_allowance_passes_and_beyond_fails() -> None:
    assert_pass(
        WriteoutGap().judge(hop(writeout=writeout(1000, 1003, downtime_ms=0))), "writeout-gap"
    )
    result = WriteoutGap().judge(hop(writeout=writeout(1000, 1004, downtime_ms=0)))
    assert_fail(result, "writeout-gap", "gap of 4 s", "gauss-a", "gauss-b", "allowed 3.0 s")


def test_writeout_gap_longer_downtime_allows_more() -> None:
    assert_pass(
        WriteoutGap().judge(hop(writeout=writeout(1000, 1005, downtime_ms=2500))), "writeout-gap"
    )


def test_writeout_gap_negative_gap_fails() -> None:
    result = WriteoutGap().judge(hop(writeout=writeout(1000, 998)))
    assert_fail(result, "writeout-gap", "gap of -2 s")


def test_writeout_gap_a_clock_jump_between_two_lines_fails() -> None:
    """The gap at the switchover is fine, but the clock jumps later on the destination (a
    time-jump typed after its first line): a step over MAX_STEP_SECONDS fails."""
    at_limit = writeout(1000, 1002, largest_step=mig.MAX_STEP_SECONDS)
    assert_pass(WriteoutGap().judge(hop(writeout=at_limit)), "writeout-gap")
    over = writeout(1000, 1002, largest_step=mig.MAX_STEP_SECONDS + 37)
    result = WriteoutGap().judge(hop(writeout=over))
    assert_fail(result, "writeout-gap", "clock jumped 40 s", "gauss-b")
    assert result.evidence["largest_step"] == 40 and result.evidence["gap_seconds"] == 2


def test_writeout_gap_time_going_backwards_fails() -> None:
    result = WriteoutGap().judge(hop(writeout=writeout(1000, 1001, monotonic=False)))
    assert_fail(result, "writeout-gap", "went backwards")


def test_writeout_no_line_on_the_source_fails() -> None:
    result = WriteoutGap().judge(hop(writeout=writeout(last=None)))
    assert_fail(result, "writeout-gap", "no time line on the source")


@pytest.mark.parametrize("first, lines", [(None, 0), (None, 3), (1001, 0)])
def test_writeout_no_line_on_the_destination_fails(first: int | None, lines: int) -> None:
    result = WriteoutGap().judge(hop(writeout=writeout(first=first, lines=lines)))
    assert_fail(result, "writeout-gap", "no time line on gauss-b's console")


def test_writeout_not_observed_fails() -> None:
    assert_fail(WriteoutGap().judge(hop(writeout=None)), "writeout-gap", "not observed")


# -- network -----------------------------------------------------------------------------------
def test_unreachable_before_switch_pass() -> None:
    result = UnreachableBeforeSwitch().judge(hop())
    assert_pass(result, "unreachable-before-switch")
    assert result.summary == "0 of 100 echo requests answered through gauss-a"


def test_unreachable_before_switch_split_brain_fails() -> None:
    result = UnreachableBeforeSwitch().judge(hop(network=network(sent=100, replies=7)))
    assert_fail(result, "unreachable-before-switch", "7 of 100", "through gauss-a", "split brain")
    assert result.evidence["old_route_replies"] == 7


def test_unreachable_before_switch_nothing_sent_fails() -> None:
    result = UnreachableBeforeSwitch().judge(hop(network=network(sent=0)))
    assert_fail(result, "unreachable-before-switch", "no probe")


def test_unreachable_before_switch_not_observed_fails() -> None:
    assert_fail(
        UnreachableBeforeSwitch().judge(hop(network=None)),
        "unreachable-before-switch",
        "not observed",
    )


def test_reachable_after_switch_pass() -> None:
    result = ReachableAfterSwitch().judge(hop(network=network(200.0, 200.5, 200.52)))
    assert_pass(result, "reachable-after-switch")
    assert result.summary == "first reply 20.0 ms after the switch, outage 520.0 ms"
    assert result.evidence["outage_ms"] == 520.0


def test_reachable_after_switch_no_reply_fails() -> None:
    result = ReachableAfterSwitch().judge(hop(network=network(first_reply=None)))
    assert_fail(
        result,
        "reachable-after-switch",
        "cannot reach the guest on gauss-b",
        "after the route switch",
    )


def test_reachable_after_switch_route_not_switched_fails() -> None:
    result = ReachableAfterSwitch().judge(hop(network=network(switched=None, first_reply=None)))
    assert_fail(result, "reachable-after-switch", "route was not switched to gauss-b")


def test_reachable_after_switch_without_a_switch_fails_even_with_a_reply() -> None:
    result = ReachableAfterSwitch().judge(hop(network=network(switched=None, first_reply=201.0)))
    assert "None" not in result.summary  # actual: "first reply None ms after the switch, ..."
    assert result.failed


def test_reachable_after_switch_not_observed_fails() -> None:
    assert_fail(
        ReachableAfterSwitch().judge(hop(network=None)), "reachable-after-switch", "not observed"
    )


# -- migration-completed -----------------------------------------------------------------------
def test_migration_completed_pass() -> None:
    result = MigrationCompleted().judge([hop()])
    assert_pass(result, "migration-completed")
    assert result.summary == "completed"
    assert result.evidence == {"attempts": 1, "failed_attempts": []}


def test_migration_completed_after_a_failed_attempt() -> None:
    attempts = [failed_hop(), hop(attempt=2)]
    result = MigrationCompleted().judge(attempts)
    assert_pass(result, "migration-completed")
    assert "after 1 failed attempt" in result.summary
    assert result.subject == "migration 1 (gauss-a -> gauss-b)"
    assert result.evidence["failed_attempts"] == ["failed: Unable to write to socket: Broken pipe"]


def test_migration_completed_only_failures_fail_with_the_fault() -> None:
    fault = "destination gauss-b died during migration 1: container exited 137"
    result = MigrationCompleted().judge([failed_hop(), failed_hop(attempt=2, fault=fault)])
    assert_fail(result, "migration-completed")
    assert result.summary == fault
    assert result.evidence["attempts"] == 2


@pytest.mark.parametrize(
    "attempt, why",
    [
        (failed_hop(status="cancelled", error=""), "cancelled"),
        (failed_hop(status="failed", error="no space"), "failed: no space"),
        (replace(failed_hop(), migration=None), "the migration did not start"),
        # a fault makes even a completed migration a failed attempt
        (replace(hop(), fault="gauss-b lost"), "gauss-b lost"),
    ],
)
def test_migration_completed_says_why(attempt: HopObservation, why: str) -> None:
    result = MigrationCompleted().judge([attempt])
    assert_fail(result, "migration-completed")
    assert result.summary == why


# -- source-intact -----------------------------------------------------------------------------
def test_source_intact_pass() -> None:
    result = SourceIntact().judge(failed_hop(after=SourceAfterFailure("running", 0, 4)))
    assert_pass(result, "source-intact")
    assert result.subject == "migration 1 (gauss-a -> gauss-b): source gauss-a"


@pytest.mark.parametrize(
    "after, words",
    [
        (SourceAfterFailure("paused", 0, 4), ["the source guest is paused"]),
        (SourceAfterFailure("postmigrate", 0, 4), ["postmigrate"]),
        (SourceAfterFailure("running", 3, 4), ["found 3 stale page(s)"]),
        (SourceAfterFailure("running", None, 4), ["printed no status"]),
        (None, ["not observed"]),
    ],
)
def test_source_intact_fails(after: SourceAfterFailure | None, words: list[str]) -> None:
    assert_fail(SourceIntact().judge(failed_hop(after=after)), "source-intact", *words)


# -- e2fsck and loads-final --------------------------------------------------------------------
def test_e2fsck_pass() -> None:
    result = E2fsck().judge(clean_disk())
    assert_pass(result, "e2fsck")
    assert result.subject == "root disk"


def test_e2fsck_errors_fail_with_the_first_output_line() -> None:
    disk = DiskObservation(4, ["", "Inode 12 has illegal block(s).", "second"])
    result = E2fsck().judge(disk)
    assert_fail(result, "e2fsck", "exit 4", "Inode 12 has illegal block(s).")
    assert "second" not in result.summary


@pytest.mark.parametrize("disk", [None, DiskObservation(None, [])])
def test_e2fsck_that_did_not_run_fails(disk: DiskObservation | None) -> None:
    assert_fail(E2fsck().judge(disk), "e2fsck", "did not run")


def test_loads_final() -> None:
    assert_pass(LoadsFinal().judge(FinalLoad("dirtyram", "PASS", 0)), "loads-final")
    result = LoadsFinal().judge(FinalLoad("hot1", "FAIL", 12))
    assert_fail(result, "loads-final", "found 12 stale page(s)")
    assert result.subject == "load hot1"
    assert_fail(LoadsFinal().judge(FinalLoad("hot1", None, None)), "loads-final", "no summary")


def test_run_fault() -> None:
    result = RunFault().judge("booting the guest: timeout")
    assert_fail(result, "procedure")
    assert result.line() == "procedure: procedure: booting the guest: timeout"


# -- judge() -----------------------------------------------------------------------------------
def names(results: list[CheckResult]) -> list[tuple[str, str]]:
    return [(r.check, r.outcome.value) for r in results]


def test_judge_a_completed_hop() -> None:
    obs = MigrationObservations([hop(loads=[load("a"), load("b")])], final_loads(), clean_disk())
    results = mig.judge(obs)
    assert names(results) == [
        ("migration-completed", "pass"),
        ("ram-pages", "pass"),
        ("unreachable-before-switch", "pass"),
        ("reachable-after-switch", "pass"),
        ("load-stale", "pass"),
        ("load-stale", "pass"),
        ("writeout-gap", "pass"),
        ("loads-final", "pass"),
        ("e2fsck", "pass"),
    ]
    assert [r.subject for r in results if r.check == "load-stale"] == [
        "migration 1 (gauss-a -> gauss-b), load a",
        "migration 1 (gauss-a -> gauss-b), load b",
    ]


def test_judge_round_trips_in_index_order() -> None:
    hops = [hop(index=1), hop(index=0)]  # out of order: judged by index
    results = mig.judge(MigrationObservations(hops, [], clean_disk()))
    completed = [r.subject for r in results if r.check == "migration-completed"]
    assert completed == ["migration 1 (gauss-a -> gauss-b)", "migration 2 (gauss-b -> gauss-a)"]


def test_judge_a_failed_then_retried_hop() -> None:
    first = failed_hop(after=SourceAfterFailure("running", 0, 2))
    obs = MigrationObservations([first, hop(attempt=2)], final_loads(), clean_disk())
    results = mig.judge(obs)
    assert names(results) == [
        ("migration-completed", "pass"),
        ("source-intact", "pass"),
        ("ram-pages", "pass"),
        ("unreachable-before-switch", "pass"),
        ("reachable-after-switch", "pass"),
        ("load-stale", "pass"),
        ("writeout-gap", "pass"),
        ("loads-final", "pass"),
        ("e2fsck", "pass"),
    ]
    assert results[1].subject == "migration 1 (gauss-a -> gauss-b): source gauss-a"
    assert results[2].subject == "migration 1 (gauss-a -> gauss-b, attempt 2)"


def test_judge_a_failed_attempt_without_source_observation_is_not_judged_if_retried() -> None:
    obs = MigrationObservations([failed_hop(), hop(attempt=2)], final_loads(), clean_disk())
    checks = [r.check for r in mig.judge(obs)]
    assert "source-intact" not in checks
    assert checks[0] == "migration-completed"


def test_judge_a_hop_that_never_completed() -> None:
    obs = MigrationObservations([failed_hop(), failed_hop(attempt=2)], final_loads(), clean_disk())
    assert names(mig.judge(obs)) == [
        ("migration-completed", "fail"),
        ("source-intact", "fail"),  # the last attempt: its source was not observed
        ("loads-final", "pass"),
        ("e2fsck", "pass"),
    ]


def test_judge_kept_running_skips_e2fsck() -> None:
    obs = MigrationObservations([hop()], [], None, kept_running=True)
    results = mig.judge(obs)
    assert names(results)[-1] == ("e2fsck", "skipped")
    assert "--keep" in results[-1].summary
    assert not any(r.failed for r in results)
    assert [r.check for r in results].count("e2fsck") == 1


def test_judge_with_a_fault() -> None:
    obs = MigrationObservations([hop()], [], None, fault="powering off: guest timeout")
    results = mig.judge(obs)
    assert names(results) == [
        ("migration-completed", "pass"),
        ("ram-pages", "pass"),
        ("unreachable-before-switch", "pass"),
        ("reachable-after-switch", "pass"),
        ("load-stale", "pass"),
        ("writeout-gap", "pass"),
        ("procedure", "fail"),  # no e2fsck: the fault already says why it did not run
    ]
    assert results[-1].summary == "powering off: guest timeout"


def test_judge_with_a_fault_and_a_disk_still_checks_the_disk() -> None:
    obs = MigrationObservations([hop()], final_loads(), DiskObservation(4, ["bad"]), fault="x")
    assert names(mig.judge(obs))[-3:] == [
        ("procedure", "fail"),
        ("loads-final", "pass"),
        ("e2fsck", "fail"),
    ]


def test_judge_without_a_disk_and_without_a_fault_fails_e2fsck() -> None:
    results = mig.judge(MigrationObservations([hop()], final_loads(), None))
    assert names(results)[-1] == ("e2fsck", "fail")
