"""Matrix records: stable JSON, round trips, and errors that name the bad field."""

from __future__ import annotations

import json

import pytest

from testbed.matrix.records import (
    Cell,
    FrontierPoint,
    IterationSample,
    MigrationTrace,
    RecordError,
    RunRecord,
    load_modes,
)
from tests.unit import matrix_samples as samples


def roundtrip_through_text(data: object) -> object:
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("record", samples.matrix(), ids=lambda r: f"{r.cell.key}#{r.run}")
def test_run_record_round_trip(record: RunRecord) -> None:
    data = roundtrip_through_text(record.to_json())
    assert RunRecord.from_json(data) == record  # type: ignore[arg-type]
    assert RunRecord.from_json(data).to_json() == record.to_json()  # type: ignore[arg-type]


def test_every_record_type_round_trips() -> None:
    trace = samples.trace(index=3, converged=False)
    assert MigrationTrace.from_json(roundtrip_through_text(trace.to_json())) == trace  # type: ignore[arg-type]
    sample = trace.iterations[0]
    assert IterationSample.from_json(sample.to_json()) == sample
    for point in samples.frontier():
        assert FrontierPoint.from_json(roundtrip_through_text(point.to_json())) == point  # type: ignore[arg-type]
    for cell in (samples.HOT_7_2, samples.SHMEM):
        assert Cell.from_json(roundtrip_through_text(cell.to_json())) == cell  # type: ignore[arg-type]


def test_json_keys_are_stable() -> None:
    """Results files outlive the code: these names are a format."""
    record = samples.matrix()[0]
    data = record.to_json()
    assert list(data) == [
        "cell", "run", "qemu_version", "verdict", "known_defect", "pages_lost",
        "checks_failed", "first_failure", "wall_seconds", "started_at", "migrations",
    ]  # fmt: skip
    assert list(record.cell.to_json()) == [
        "scenario", "suite", "arch", "smp", "load", "accel", "hold_s", "bandwidth",
    ]  # fmt: skip
    migration = record.migrations[0].to_json()
    assert list(migration) == [
        "index", "total_ms", "downtime_ms", "converged", "dirty_sync_count", "link_bps",
        "load_dirty_rate_bps", "page_size", "iterations",
    ]  # fmt: skip
    assert list(record.migrations[0].iterations[0].to_json()) == [
        "t_ms", "pass_no", "transferred_bytes", "remaining_bytes", "dirty_rate_pages_s", "mbps",
    ]  # fmt: skip
    assert list(samples.frontier()[0].to_json()) == [
        "link", "link_bps", "dirty_rate_bps", "converged", "arch", "qemu_version",
    ]  # fmt: skip


def test_cell_key_is_stable_and_distinguishes_every_field() -> None:
    base = Cell("migration", "bookworm", "armv7", 2, "hot:256", "tcg", 5.0, "100mbit")
    assert base.key == "migration/bookworm/armv7/smp2/hot:256/tcg/hold5/100mbit"
    assert Cell("shmem", "bookworm", "armv8", 1, "dirty", "kvm").key == (
        "shmem/bookworm/armv8/smp1/dirty/kvm/hold0/unshaped"
    )
    variants = [
        Cell("shmem", "bookworm", "armv7", 2, "hot:256", "tcg", 5.0, "100mbit"),
        Cell("migration", "bookworm-backports", "armv7", 2, "hot:256", "tcg", 5.0, "100mbit"),
        Cell("migration", "bookworm", "armv8", 2, "hot:256", "tcg", 5.0, "100mbit"),
        Cell("migration", "bookworm", "armv7", 1, "hot:256", "tcg", 5.0, "100mbit"),
        Cell("migration", "bookworm", "armv7", 2, "hot:512", "tcg", 5.0, "100mbit"),
        Cell("migration", "bookworm", "armv7", 2, "hot:256", "kvm", 5.0, "100mbit"),
        Cell("migration", "bookworm", "armv7", 2, "hot:256", "tcg", 2.5, "100mbit"),
        Cell("migration", "bookworm", "armv7", 2, "hot:256", "tcg", 5.0, "1gbit"),
        Cell("migration", "bookworm", "armv7", 2, "hot:256", "tcg", 5.0, None),
    ]
    keys = {base.key, *(v.key for v in variants)}
    assert len(keys) == 1 + len(variants)
    assert Cell("migration", "bookworm", "armv7", 2, "hot", "tcg", 2.5).key.endswith(
        "hold2.5/unshaped"
    )


@pytest.mark.parametrize(
    ("load", "modes"),
    [
        ("seed", ("seed",)),
        ("hot:256", ("hot",)),
        ("seed:512:512:50+hot:256@1", ("seed", "hot")),
        ("dirty", ("dirty",)),
    ],
)
def test_load_modes(load: str, modes: tuple[str, ...]) -> None:
    assert load_modes(load) == modes


@pytest.mark.parametrize(
    ("mutate", "path", "problem"),
    [
        (lambda d: d.pop("run"), "$.run", "missing"),
        (lambda d: d.update(run="1"), "$.run", "expected an integer, got a string"),
        (lambda d: d.update(run=0), "$.run", "not 1-based"),
        (lambda d: d.update(verdict="maybe"), "$.verdict", "is not one of"),
        (lambda d: d.update(pages_lost=True), "$.pages_lost", "got a boolean"),
        (lambda d: d["cell"].update(smp=1.5), "$.cell.smp", "expected an integer"),
        (lambda d: d["cell"].update(scenario="boot"), "$.cell.scenario", "not one of"),
        (lambda d: d["cell"].pop("bandwidth"), "$.cell.bandwidth", "missing"),
        (lambda d: d.update(checks_failed=["ram-pages", 3]), "$.checks_failed[1]", "a string"),
        (
            lambda d: d["migrations"][0]["iterations"][0].update(mbps="fast"),
            "$.migrations[0].iterations[0].mbps",
            "expected a number",
        ),
        (lambda d: d.update(migrations={}), "$.migrations", "expected a list"),
    ],
)
def test_from_json_names_the_bad_field(mutate: object, path: str, problem: str) -> None:
    data = json.loads(json.dumps(samples.matrix()[1].to_json()))
    mutate(data)  # type: ignore[operator]
    with pytest.raises(RecordError) as info:
        RunRecord.from_json(data)
    assert info.value.path == path
    assert problem in info.value.problem


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    data = json.loads(json.dumps(samples.matrix()[0].to_json()))
    data["wall_seconds"] = 41
    data["cell"]["hold_s"] = 5
    record = RunRecord.from_json(data)
    assert record.wall_seconds == 41.0 and isinstance(record.wall_seconds, float)
    assert record.cell == samples.HOT_7_2


def test_a_record_refuses_a_verdict_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="verdict"):
        samples.record(verdict="flaky")
