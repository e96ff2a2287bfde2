"""testbed matrix run|report, in process, with a fake run_cell (no Docker): bad input is one
line and exit 2 with nothing created; runs resume; Ctrl-C keeps the records; shards merge."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from testbed.cli import _Parser, matrix
from testbed.errors import UserError
from testbed.matrix import runner
from testbed.matrix.records import Cell, RunRecord
from testbed.matrix.store import ResultStore
from tests.unit import matrix_samples as samples

SMALL = ["--arch", "armv7", "--smp", "2", "--load", "hot:256", "--accel", "tcg"]


def invoke(*argv: str) -> tuple[int, str]:
    """What testbed.cli.main does with the matrix verbs: (exit status, error line)."""
    parser = _Parser(prog="testbed")
    matrix.register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["matrix", *argv])
        status: int = args.func(args)
        return status, ""
    except UserError as exc:
        return 2, f"error: {exc}"
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0), ""


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, int, str]]:
    """A fake lab: run 2 of every cell fails; every call is listed."""
    monkeypatch.chdir(tmp_path)
    made: list[tuple[str, int, str]] = []

    def fake(cell: Cell, run: int, lab: str) -> RunRecord:
        made.append((cell.key, run, lab))
        return samples.record(cell, run, "fail" if run == 2 else "pass", pages_lost=run)

    monkeypatch.setattr(runner, "run_cell", fake)
    return made


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "sid"], "error: --suite sid: unknown QEMU suite: use one of bookworm"),
        (["--arch", "armv7,armv9"], "error: --arch armv9: unknown guest architecture"),
        (["--smp", "0"], "error: --smp 0 is out of range: use 1 to 8"),
        (["--smp", "1,two"], "error: --smp two: not a number: use e.g. 1,2"),
        (["--runs", "0"], "error: --runs 0 is out of range: use 1 or more"),
        (["--shard", "6/5"], "error: --shard 6/5: index must be 1 to 5: use I/N with 1 <= I <= N"),
        (["--load", "dirty"], "error: --load dirty: 'dirty' is not a migration load"),
        (["--scenario", "shmem", "--load", "hot"], "error: --load hot: 'hot' is not a shmem load"),
        (["--accel", "hvf"], "error: --accel hvf: unknown accelerator"),
        (["--bandwidth", "fast"], "error: --bandwidth fast: not a rate"),
        (["--hold", "-2"], "error: --hold -2.0 is out of range"),
        (["--results", "plain-file/results.jsonl"], "error: --results plain-file/results.jsonl: "),
        (["--results", "a-dir"], "error: --results a-dir: not a regular file: give a file path"),
        (["--report", "plain-file"], "error: --report plain-file: not a directory"),
        (["--report", "plain-file/deeper/report"], "error: --report plain-file/deeper/report: "),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    calls: list[tuple[str, int, str]], tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "plain-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    status, error = invoke("run", *args)
    assert status == 2 and "\n" not in error and error.startswith(message), error
    assert not calls
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_usage_errors_exit_2(calls: list[tuple[str, int, str]]) -> None:
    assert invoke("run", "--scenario", "boot")[0] == 2
    assert invoke("run", "--runs", "many")[0] == 2
    assert invoke()[0] == 2  # a verb is required
    assert invoke("report")[0] == 2  # at least one file


def test_run_records_reports_and_resumes(
    calls: list[tuple[str, int, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = invoke("run", *SMALL, "--runs", "1", "--report", "rep", "--lab", "lab2")
    assert status == 0 and len(calls) == 2 and {lab for _, _, lab in calls} == {"lab2"}
    assert (tmp_path / "rep" / "index.html").is_file()
    records = ResultStore(tmp_path / "matrix" / "results.jsonl").records()
    assert [r.run for r in records] == [1, 1]
    capsys.readouterr()
    status, _ = invoke("run", *SMALL, "--runs", "2", "--json")
    assert status == 1  # run 2 fails
    data = json.loads(capsys.readouterr().out)
    assert (data["recorded_before"], data["recorded_now"], data["remaining"]) == (2, 2, 0)
    assert [c["failing"] for c in data["cells"]] == [1, 1]
    assert len(calls) == 4
    status, _ = invoke("run", *SMALL, "--runs", "2")
    assert len(calls) == 4  # nothing left to run


def test_ctrl_c_keeps_the_records_and_says_how_to_resume(
    monkeypatch: pytest.MonkeyPatch,
    calls: list[tuple[str, int, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = runner.run_cell

    def interrupted(cell: Cell, run: int, lab: str) -> RunRecord:
        if len(calls) == 3:
            raise KeyboardInterrupt
        return fake(cell, run, lab)

    monkeypatch.setattr(runner, "run_cell", interrupted)
    status, _ = invoke("run", *SMALL, "--runs", "3", "--results", "r.jsonl")
    assert status == 130
    assert "run the same command to resume" in capsys.readouterr().err.replace("\n", " ")
    assert len(ResultStore(tmp_path / "r.jsonl").records()) == 3
    monkeypatch.setattr(runner, "run_cell", fake)
    assert invoke("run", *SMALL, "--runs", "3", "--results", "r.jsonl")[0] == 1
    assert len(ResultStore(tmp_path / "r.jsonl").records()) == 6


def test_shards_then_report(
    calls: list[tuple[str, int, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for index in (1, 2, 3):
        invoke("run", *SMALL, "--runs", "2", "--shard", f"{index}/3", "--results", f"s{index}")
    assert len(calls) == 4 and len({(key, run) for key, run, _ in calls}) == 4
    capsys.readouterr()
    status, _ = invoke("report", "s1", "s2", "s3", "--out", "merged", "--json")
    assert status == 1
    data = json.loads(capsys.readouterr().out)
    assert data["runs"] == 4 and [c["runs"] for c in data["cells"]] == [2, 2]
    for name in ("index.html", "summary.md", "results.json"):
        assert (tmp_path / "merged" / name).is_file()


def test_report_refuses_conflicts_and_missing_files(
    calls: list[tuple[str, int, str]], tmp_path: Path
) -> None:
    invoke("run", *SMALL, "--runs", "1", "--results", "a")
    other = ResultStore(tmp_path / "b")
    first = replace(samples.HOT_7_2, hold_s=0.0, bandwidth=None)  # SMALL's first cell
    other.append(samples.record(first, 1, "fail", pages_lost=7))
    status, error = invoke("report", "a", "b", "--out", "out")
    assert status == 2 and "hold different results" in error and "\n" not in error
    assert not (tmp_path / "out").exists()
    status, error = invoke("report", "a", "missing", "--out", "out")
    assert (status, error) == (
        2,
        "error: missing: no such results file: give files that `matrix run` wrote",
    )


def test_register_adds_run_and_report() -> None:
    parser = argparse.ArgumentParser()
    matrix.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["matrix", "run"])
    assert args.func is matrix.cmd_run and args.runs == matrix.DEFAULT_RUNS
    assert args.results == "matrix/results.jsonl" and args.shard == "1/1"
    args = parser.parse_args(["matrix", "report", "x.jsonl"])
    assert args.func is matrix.cmd_report and args.files == ["x.jsonl"]


def test_failure_text_is_not_taken_for_rich_markup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    text = "dirtyram: stale_pages=[/red] [bold]3 4[/]"

    def fake(cell: Cell, run: int, lab: str) -> RunRecord:
        return samples.record(cell, run, "fail", pages_lost=2, first_failure=text,
                              checks_failed=("load-stale",))  # fmt: skip

    monkeypatch.setattr(runner, "run_cell", fake)
    assert invoke("run", *SMALL, "--suite", "bookworm", "--runs", "1")[0] == 1
    captured = capsys.readouterr()
    assert text in captured.err
