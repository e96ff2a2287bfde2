"""Known defects: the shipped entries, the matching rule (every condition and every failed
check must fit, or the run stays a FAIL) and malformed files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from testbed.checks.shmem import SENT_MID_WRITE
from testbed.errors import UserError
from testbed.known_defects import (
    KnownDefect,
    KnownDefectsError,
    load_defects,
    match,
    parse_defects,
    parse_version,
)
from testbed.matrix.records import Cell

DEFECTS = load_defects()
BY_ID = {d.id: d for d in DEFECTS}
SHM_FIX = "tcg-dirty-sync-fastpath"
SHM_10 = "tcg-shmem-lost-writes-10.0"
IN_FLIGHT = "tcg-shmem-write-in-flight-10.0"
ABORT = "tcg-tlb-reset-dirty-range-all-abort"
HOT = "tcg-armv7-smp-hot-ram-loss-7.2"
ASSERTION = (
    "qemu-system-aarch64: ../system/physmem.c:1007: tlb_reset_dirty_range_all: Assertion "
    "`block == qemu_get_ram_block(end - 1)' failed."
)

SHMEM_DIRTY = Cell("shmem", "bookworm", "armv8", 1, "dirty", "tcg")
HOT_CELL = Cell("migration", "bookworm", "armv7", 2, "hot:256", "tcg", 5.0, "100mbit")


def found(cell: Cell, version: str, checks: list[str], messages: tuple[str, ...] = (),
          accel: str | None = None) -> str | None:  # fmt: skip
    defect = match(DEFECTS, cell, version, checks, messages, accel)
    return None if defect is None else defect.id


def test_the_shipped_entries() -> None:
    assert set(BY_ID) == {SHM_FIX, SHM_10, IN_FLIGHT, ABORT, HOT}
    # the entry asks for the very words the checkpoint check writes for that shape of loss
    assert BY_ID[IN_FLIGHT].message_contains == SENT_MID_WRITE
    fix = BY_ID[SHM_FIX].upstream_fix
    assert fix is not None and fix.commit.startswith("03bfc2188f") and fix.version == "9.0.0"
    assert BY_ID[SHM_FIX].fixed == "9.0.0" and BY_ID[SHM_10].introduced == "9.0.0"
    assert BY_ID[ABORT].message_contains == "tlb_reset_dirty_range_all"
    assert BY_ID[HOT].checks == ("ram-pages", "load-stale", "loads-final")
    assert BY_ID[HOT].smp_min == 2
    for defect in DEFECTS:
        assert defect.accels == ("tcg",) and defect.note.strip() and defect.title
        assert "*" not in defect.checks


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("7.2.22", SHM_FIX),
        ("1:7.2+dfsg-7+deb12u13", SHM_FIX),  # a Debian package version
        ("8.2.10", SHM_FIX),
        ("8.2.99", SHM_FIX),
        ("9.0.0", SHM_10),  # the fix's release: the first entry ends, the second begins
        ("9.0", SHM_10),
        ("10.0.2", SHM_10),
        ("10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)", SHM_10),
        ("unknown", None),
    ],
)
def test_shmem_write_loss_by_version(version: str, expected: str | None) -> None:
    assert found(SHMEM_DIRTY, version, ["checkpoint"]) == expected
    assert found(replace(SHMEM_DIRTY, arch="armv7"), version, ["checkpoint"]) == expected


@pytest.mark.parametrize(
    ("cell", "version", "checks", "why"),
    [
        (replace(SHMEM_DIRTY, load="remap"), "7.2.22", ["checkpoint"], "remap must be exact"),
        (replace(SHMEM_DIRTY, accel="kvm"), "7.2.22", ["checkpoint"], "TCG only"),
        (replace(SHMEM_DIRTY, accel="auto"), "10.0.2", ["checkpoint"], "unresolved auto"),
        (SHMEM_DIRTY, "7.2.22", ["checkpoint", "final-compare"], "an unlisted check failed"),
        (SHMEM_DIRTY, "7.2.22", ["qemu-alive"], "a crash is not lost writes"),
        (SHMEM_DIRTY, "7.2.22", [], "nothing failed"),
        (replace(HOT_CELL, load="dirty"), "7.2.22", ["checkpoint"], "migration scenario"),
    ],
)
def test_shmem_write_loss_does_not_explain(
    cell: Cell, version: str, checks: list[str], why: str
) -> None:
    assert found(cell, version, checks) is None, why


def test_the_accel_a_run_actually_used_counts() -> None:
    auto = replace(SHMEM_DIRTY, accel="auto")
    assert found(auto, "10.0.2", ["checkpoint"], accel="tcg") == SHM_10
    assert found(SHMEM_DIRTY, "10.0.2", ["checkpoint"], accel="kvm") is None


def test_the_abort_needs_its_message() -> None:
    remap = replace(SHMEM_DIRTY, load="remap")
    assert found(remap, "10.0.2", ["qemu-alive"], (ASSERTION,)) == ABORT
    assert found(SHMEM_DIRTY, "10.0.2", ["qemu-alive"], ("x", ASSERTION)) == ABORT
    assert found(remap, "10.0.2", ["qemu-alive"], ("Segmentation fault",)) is None
    assert found(remap, "10.0.2", ["qemu-alive"]) is None
    assert found(remap, "9.2.0", ["qemu-alive"], (ASSERTION,)) is None  # not measured there
    assert found(remap, "10.0.2", ["qemu-alive", "checkpoint"], (ASSERTION,)) is None
    assert found(replace(remap, accel="kvm"), "10.0.2", ["qemu-alive"], (ASSERTION,)) is None
    migration = replace(HOT_CELL, suite="bookworm-backports")
    assert found(migration, "10.0.2", ["qemu-alive"], (ASSERTION,)) is None


@pytest.mark.parametrize(
    ("cell", "version", "checks", "expected"),
    [
        (HOT_CELL, "7.2.22", ["ram-pages", "load-stale"], HOT),
        (HOT_CELL, "7.2.22", ["ram-pages"], HOT),
        (HOT_CELL, "7.2.22", ["load-stale"], HOT),
        (replace(HOT_CELL, smp=4, hold_s=0.0, bandwidth=None), "7.2.0", ["ram-pages"], HOT),
        (replace(HOT_CELL, load="seed:512:512:50+hot:256@1"), "7.2.22", ["ram-pages"], HOT),
        (HOT_CELL, "10.0.2", ["ram-pages"], None),  # measured clean: a loss there is news
        (HOT_CELL, "9.0.0", ["ram-pages"], None),
        (HOT_CELL, "8.0.0", ["ram-pages"], None),
        (HOT_CELL, "7.2.22", ["ram-pages", "network"], None),
        (HOT_CELL, "7.2.22", ["disk"], None),
        (replace(HOT_CELL, smp=1), "7.2.22", ["ram-pages"], None),
        (replace(HOT_CELL, arch="armv8"), "7.2.22", ["ram-pages"], None),
        (replace(HOT_CELL, accel="kvm"), "7.2.22", ["ram-pages"], None),
        (replace(HOT_CELL, load="seed"), "7.2.22", ["ram-pages"], None),
        (replace(HOT_CELL, load="random:1024"), "7.2.22", ["ram-pages"], None),
        (replace(HOT_CELL, scenario="shmem", load="hot"), "7.2.22", ["ram-pages"], None),
    ],
)
def test_main_ram_loss_on_7_2(
    cell: Cell, version: str, checks: list[str], expected: str | None
) -> None:
    assert found(cell, version, checks) == expected


def synthetic(**changes: object) -> KnownDefect:
    base = KnownDefect(
        id="x", title="x", scenario="migration", accels=("*",), arches=("*",), loads=("*",),
        checks=("ram-pages",), note="x",
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "mismatch"),
    [
        ({}, None),
        ({"scenario": "shmem"}, "scenario migration is not shmem"),
        ({"introduced": "7.2.23"}, "QEMU 7.2.22 is outside [7.2.23, None)"),
        ({"introduced": "7.2.22"}, None),  # inclusive
        ({"fixed": "7.2.22"}, "QEMU 7.2.22 is outside [None, 7.2.22)"),  # exclusive
        ({"fixed": "7.2.23"}, None),
        ({"accels": ("kvm",)}, "accel tcg is not one of kvm"),
        ({"arches": ("armv8",)}, "arch armv7 is not one of armv8"),
        ({"smp_min": 3}, "smp 2 < 3"),
        ({"smp_min": 2}, None),
        ({"loads": ("seed", "wide")}, "load hot:256 has none of the modes seed, wide"),
        ({"checks": ("load-stale",)}, "failed check ram-pages is not one this defect produces"),
        ({"message_contains": "boom"}, "no failure message contains 'boom'"),
        ({"message_contains": "pages"}, None),
        (
            {"message_contains": "boom", "message_in_every_failure": True},
            "a failure message does not contain 'boom'",
        ),
        ({"message_contains": "pages", "message_in_every_failure": True}, None),
    ],
)
def test_every_condition_on_its_own(changes: dict[str, object], mismatch: str | None) -> None:
    defect = synthetic(**changes)
    assert defect.mismatch(HOT_CELL, "7.2.22", ["ram-pages"], ["pages differ"]) == mismatch
    expected = None if mismatch else defect
    assert match([defect], HOT_CELL, "7.2.22", ["ram-pages"], ["pages differ"]) == expected


def test_message_in_every_failure_needs_it_in_each_message() -> None:
    some = synthetic(message_contains="mid-write")
    every = synthetic(message_contains="mid-write", message_in_every_failure=True)
    messages = ["page 1 sent mid-write", "page 9 wholly stale"]
    assert some.mismatch(HOT_CELL, "7.2.22", ["ram-pages"], messages) is None
    assert every.mismatch(HOT_CELL, "7.2.22", ["ram-pages"], messages) == (
        "a failure message does not contain 'mid-write'"
    )
    assert every.mismatch(HOT_CELL, "7.2.22", ["ram-pages"], messages[:1]) is None
    assert every.mismatch(HOT_CELL, "7.2.22", ["ram-pages"], []) is not None


def test_the_first_matching_entry_wins() -> None:
    a, b = synthetic(id="a"), synthetic(id="b")
    assert match([a, b], HOT_CELL, "7.2.22", ["ram-pages"]) is a
    assert match([synthetic(id="c", smp_min=4), b], HOT_CELL, "7.2.22", ["ram-pages"]) is b


@pytest.mark.parametrize(
    ("text", "version"),
    [("7.2.22", (7, 2, 22)), ("10.0.2", (10, 0, 2)), ("9.0", (9, 0, 0)), ("v8.2.1-rc0", (8, 2, 1)),
     ("1:7.2+dfsg-7", (7, 2, 0)), ("none", None)],
)  # fmt: skip
def test_parse_version(text: str, version: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == version


ENTRY = """
[[defect]]
id = "x"
title = "t"
scenario = "shmem"
accels = ["tcg"]
arches = ["armv8"]
loads = ["dirty"]
checks = ["checkpoint"]
note = "n"
"""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[defect]\n", "syntax: "),
        ("colour = 1\n" + ENTRY, "colour: unknown key (only [[defect]] tables)"),
        ("defect = [1]\n", "defect[0]: must be a table"),
        ("defect = 1\n", "defect: must be an array of tables"),
        (ENTRY.replace('checks = ["checkpoint"]\n', ""), "defect[0] (x).checks: missing"),
        (ENTRY + 'colour = "red"\n', "defect[0] (x).colour: unknown key"),
        (ENTRY.replace('["tcg"]', '["hvf"]'), "defect[0] (x).accels: 'hvf' is not one of tcg"),
        (ENTRY.replace('["armv8"]', '"armv8"'), "defect[0] (x).arches: must be a non-empty list"),
        (ENTRY.replace('["armv8"]', "[]"), "defect[0] (x).arches: must be a non-empty list"),
        (ENTRY.replace('"shmem"', '"boot"'), "defect[0] (x).scenario: 'boot' is not one of"),
        (ENTRY.replace('["checkpoint"]', '["*"]'), "defect[0] (x).checks: must name the checks"),
        (ENTRY.replace('id = "x"', 'id = "X Y"'), "defect[0] (X Y).id: 'X Y': use lower-case"),
        (ENTRY.replace('title = "t"', "title = 3"), "defect[0] (x).title: must be a non-empty"),
        (ENTRY + 'fixed = "soon"\n', "defect[0] (x).fixed: 'soon' is not a QEMU version"),
        (ENTRY + 'introduced = "9.0"\nfixed = "8.2"\n', "defect[0] (x).fixed: 8.2 is not after"),
        (ENTRY + "smp_min = 0\n", "defect[0] (x).smp_min: must be an integer of 1 or more"),
        (ENTRY + "smp_min = true\n", "defect[0] (x).smp_min: must be an integer"),
        (
            ENTRY + 'message_contains = "m"\nmessage_in_every_failure = 1\n',
            "defect[0] (x).message_in_every_failure: must be true or false",
        ),
        (
            ENTRY + "message_in_every_failure = true\n",
            "defect[0] (x).message_in_every_failure: needs message_contains",
        ),
        (ENTRY + 'upstream_fix = "abc"\n', "defect[0] (x).upstream_fix: must be a table"),
        (
            ENTRY + 'upstream_fix = { commit = "xyz", subject = "s" }\n',
            "defect[0] (x).upstream_fix.commit: 'xyz' is not a git commit id",
        ),
        (
            ENTRY + 'upstream_fix = { commit = "03bfc2188f" }\n',
            "defect[0] (x).upstream_fix.subject: must be a non-empty string",
        ),
        (
            ENTRY + 'upstream_fix = { commit = "03bfc2188f", subject = "s", when = 1 }\n',
            "defect[0] (x).upstream_fix.when: unknown key",
        ),
        (ENTRY + ENTRY, "defect[1] (x): duplicate id"),
    ],
)
def test_a_malformed_file_is_one_line_naming_file_entry_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "defects.toml"
    path.write_text(text)
    with pytest.raises(KnownDefectsError) as info:
        load_defects(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {problem}"), message
    assert message.endswith(": fix the known-defects file")


def test_a_well_formed_file(tmp_path: Path) -> None:
    text = ENTRY + 'introduced = "9.0.0"\nupstream_fix = { commit = "03bfc2188f", subject = "s" }\n'
    (defect,) = parse_defects(text, "t.toml")
    assert defect.introduced == "9.0.0" and defect.fixed is None and defect.smp_min == 1
    assert defect.upstream_fix is not None and defect.upstream_fix.version is None
    assert parse_defects("", "empty.toml") == []


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        load_defects(tmp_path / "missing.toml")
