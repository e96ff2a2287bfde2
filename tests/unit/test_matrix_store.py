"""Results as JSON lines: resume, a crash mid-write, merging shards; and the run loop."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from testbed.errors import UserError
from testbed.matrix.cells import Shard, pairs
from testbed.matrix.records import Cell, RunRecord
from testbed.matrix.runner import Progress, run_matrix
from testbed.matrix.store import ResultStore, StoreError, merge
from tests.unit import matrix_samples as samples

CELLS = [samples.HOT_7_2, samples.HOT_10_0, samples.SHMEM]


def fake_run(cell: Cell, run: int) -> RunRecord:
    return samples.record(cell, run, "fail" if run == 2 else "pass", pages_lost=run)


def test_append_records_done(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "sub" / "results.jsonl")
    assert store.records() == [] and store.done() == set()
    for record in samples.matrix():
        store.append(record)
    assert store.records() == samples.matrix()
    assert store.done() == {(r.cell.key, r.run) for r in samples.matrix()}
    lines = store.path.read_text().splitlines()
    assert len(lines) == len(samples.matrix())
    assert json.loads(lines[0]) == samples.matrix()[0].to_json()


def test_a_cut_short_last_line_is_skipped_with_a_warning_and_cut_off_on_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ResultStore(tmp_path / "results.jsonl")
    first, second, third = samples.matrix()[:3]
    store.append(first)
    store.append(second)
    text = store.path.read_text()
    store.path.write_text(text[: len(text) - 40])  # the crash came while writing line 2
    with caplog.at_level(logging.WARNING):
        assert store.records() == [first]
    assert "incomplete last line" in caplog.text
    assert store.done() == {first.pair}
    store.append(third)
    assert store.records() == [first, third]
    assert store.path.read_text().count("\n") == 2


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.jsonl")
    first, second, third = samples.matrix()[:3]
    store.append(first)
    store.append(second)
    store.path.write_text(store.path.read_text().rstrip("\n"))
    assert store.records() == [first, second]
    store.append(third)
    assert store.records() == [first, second, third]


def test_a_damaged_line_in_the_middle_is_one_error_naming_file_and_line(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.jsonl")
    for record in samples.matrix()[:3]:
        store.append(record)
    lines = store.path.read_text().splitlines()
    lines[1] = lines[1][:50]
    store.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(StoreError) as info:
        store.records()
    assert str(info.value).startswith(f"{store.path}:2: not JSON")
    lines[1] = json.dumps({"run": 1})
    store.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(StoreError, match=r":2: not a result record \(\$\.verdict: missing\)"):
        store.records()


def shard_files(tmp_path: Path, count: int) -> list[Path]:
    every = pairs(CELLS, 3)
    paths = []
    for index in range(1, count + 1):
        store = ResultStore(tmp_path / f"shard-{index}.jsonl")
        for cell, run in Shard(index, count).select(every):
            store.append(fake_run(cell, run))
        paths.append(store.path)
    return paths


def test_merge_puts_the_shards_together_in_order(tmp_path: Path) -> None:
    paths = shard_files(tmp_path, 2)
    merged = merge(reversed(paths))
    assert len(merged) == len(CELLS) * 3
    assert [(r.cell.sort_key, r.run) for r in merged] == sorted(
        (r.cell.sort_key, r.run) for r in merged
    )
    assert merge(paths) == merged


def test_merge_keeps_identical_duplicates_once(tmp_path: Path) -> None:
    paths = shard_files(tmp_path, 2)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(paths[0].read_bytes())
    assert merge([*paths, copy]) == merge(paths)


def test_merge_refuses_conflicting_duplicates_in_one_line(tmp_path: Path) -> None:
    paths = shard_files(tmp_path, 2)
    first = ResultStore(paths[0]).records()[0]
    other = ResultStore(tmp_path / "other.jsonl")
    other.append(samples.record(first.cell, first.run, "fail", pages_lost=99, first_failure="x"))
    with pytest.raises(UserError) as info:
        merge([*paths, other.path])
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{paths[0]}:1 and {other.path}:1 hold different results for ")
    assert f"{first.cell.key} run {first.run}" in text


def test_merge_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such results file"):
        merge([tmp_path / "nothing.jsonl"])


def test_run_matrix_records_every_pair_and_resumes(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.jsonl")
    calls: list[tuple[str, int]] = []
    progress: list[Progress] = []

    def counting(cell: Cell, run: int) -> RunRecord:
        calls.append((cell.key, run))
        return fake_run(cell, run)

    outcome = run_matrix(CELLS, 2, Shard(), store, counting, progress.append)
    assert len(calls) == 6 and not outcome.interrupted and outcome.remaining == 0
    assert [p.record is None for p in progress] == [True, False] * 6
    assert progress[-1].position == progress[-1].to_run == 6
    assert store.done() == {(c.key, r) for c, r in pairs(CELLS, 2)}
    calls.clear()
    outcome = run_matrix(CELLS, 3, Shard(), store, counting)  # one more run per cell
    assert calls == [(c.key, 3) for c in CELLS]
    assert outcome.already_done == 6 and len(outcome.records) == 3
    assert len(store.records()) == 9


def test_run_matrix_runs_only_its_shard(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.jsonl")
    outcome = run_matrix(CELLS, 3, Shard(2, 4), store, fake_run)
    assert outcome.shard_pairs == 2
    assert [r.pair for r in store.records()] == [
        (c.key, r) for c, r in Shard(2, 4).select(pairs(CELLS, 3))
    ]


def test_ctrl_c_stops_cleanly_and_keeps_the_records(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.jsonl")

    def interrupted_on_the_third(cell: Cell, run: int) -> RunRecord:
        if len(store.records()) == 2:
            raise KeyboardInterrupt
        return fake_run(cell, run)

    outcome = run_matrix(CELLS, 2, Shard(), store, interrupted_on_the_third)
    assert outcome.interrupted and len(outcome.records) == 2 and outcome.remaining == 4
    assert len(store.records()) == 2
    outcome = run_matrix(CELLS, 2, Shard(), store, fake_run)
    assert not outcome.interrupted and outcome.already_done == 2 and len(store.records()) == 6


def test_a_record_of_another_pair_is_a_programming_error(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.jsonl")
    with pytest.raises(ValueError, match="returned a record of"):
        run_matrix(CELLS, 1, Shard(), store, lambda cell, run: fake_run(CELLS[0], run + 1))
    assert store.records() == []
