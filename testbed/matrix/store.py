"""A matrix's results as JSON lines: one :class:`RunRecord` per line, each line written
and fsync'd before the next run starts, so that a rerun resumes where the last one stopped.

A crash can leave the last line cut short: reading skips it with a warning, and the next
append cuts it off first (its run was never recorded, so it runs again)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from testbed.errors import UserError
from testbed.matrix.records import RecordError, RunRecord

LOG = logging.getLogger(__name__)


class StoreError(UserError):
    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(
            f"{path}:{line}: {problem}", "repair or delete that line (its run will run again)"
        )


class ResultStore:
    """The results file of one matrix (or one shard of it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def records(self) -> list[RunRecord]:
        """Every complete record, in file order.  A cut-short last line is skipped."""
        return [record for _, record in self.numbered()]

    def done(self) -> set[tuple[str, int]]:
        """The (cell key, run) pairs that have a record."""
        return {record.pair for record in self.records()}

    def append(self, record: RunRecord) -> None:
        """Adds one record and makes it durable (fsync) before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._repair_tail()
        line = (json.dumps(record.to_json(), sort_keys=True) + "\n").encode()
        with open(self.path, "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if new:  # the file's directory entry must survive a crash too
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def _repair_tail(self) -> None:
        """A last line without its newline: completed when it is a whole record, else cut
        off (the crash came in the middle of writing it)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if _parse(tail) is not None:
            with open(self.path, "ab") as f:
                f.write(b"\n")
            return
        LOG.warning("%s: cutting off an incomplete last line (%d bytes)", self.path, len(tail))
        os.truncate(self.path, cut)

    def numbered(self) -> Iterator[tuple[int, RunRecord]]:
        """(line number, record) for every complete record, in file order."""
        if not self.path.exists():
            return
        lines = self.path.read_bytes().split(b"\n")
        complete = lines[:-1]  # split leaves what follows the last newline at the end
        tail = lines[-1]
        for number, raw in enumerate(complete, start=1):
            if not raw.strip():
                continue
            yield number, _decode(self.path, number, raw)
        if tail.strip():
            record = _parse(tail)
            if record is None:
                LOG.warning(
                    "%s:%d: incomplete last line skipped (a crash while writing it?)",
                    self.path,
                    len(lines),
                )
            else:
                yield len(lines), record


def merge(paths: Iterable[str | Path]) -> list[RunRecord]:
    """The records of several results files (the shards of one matrix), sorted by cell and
    run.  The same (cell, run) twice is kept once when both are identical, refused when not."""
    seen: dict[tuple[str, int], tuple[RunRecord, str]] = {}
    for path in paths:
        store = ResultStore(path)
        if not store.path.is_file():
            raise UserError(f"{path}: no such results file", "give files that `matrix run` wrote")
        for number, record in store.numbered():
            where = f"{path}:{number}"
            if record.pair in seen:
                first, first_where = seen[record.pair]
                if first.to_json() != record.to_json():
                    raise UserError(
                        f"{first_where} and {where} hold different results for "
                        f"{record.cell.key} run {record.run}",
                        "merge the shards of one matrix only, or delete one of the two lines",
                    )
                continue
            seen[record.pair] = (record, where)
    return sorted((record for record, _ in seen.values()), key=lambda r: (r.cell.sort_key, r.run))


def _decode(path: Path, number: int, raw: bytes) -> RunRecord:
    try:
        return RunRecord.from_json(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(path, number, f"not JSON ({exc})") from None
    except (RecordError, ValueError) as exc:
        raise StoreError(path, number, f"not a result record ({exc})") from None


def _parse(raw: bytes) -> RunRecord | None:
    try:
        return RunRecord.from_json(json.loads(raw))
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError and RecordError are both
        return None
