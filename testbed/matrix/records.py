"""The data of a detection matrix: cells, runs, migration traces, frontier points.

Every record has ``to_json()`` (plain JSON data, stable key names) and ``from_json()``
(which checks every field and names the first bad one: :class:`RecordError`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.matrix.jsonfields import Json as Json  # re-exported: part of this API
from testbed.matrix.jsonfields import JsonObject as JsonObject
from testbed.matrix.jsonfields import RecordError as RecordError
from testbed.matrix.jsonfields import flat_json, get, json_object, optional, strings

SCENARIOS = ("migration", "shmem")
VERDICTS = ("pass", "fail", "known-defect")
LINKS = ("100mbit", "1gbit", "unshaped")
# The Debian suite of the board image and the QEMU it brings (README: images).
SUITE_QEMU = {"bookworm": "7.2", "bookworm-backports": "10.0"}


def load_modes(load: str) -> tuple[str, ...]:
    """The modes of a canonical load text: ``seed:512:512:50+hot:256@1`` -> (seed, hot)."""
    return tuple(part.split("@")[0].split(":")[0] for part in load.split("+") if part)


@dataclass(frozen=True)
class Cell:
    """One point of the matrix: what runs, where, under which conditions."""

    scenario: str  # migration | shmem
    suite: str  # Debian suite of the QEMU image: bookworm (7.2), bookworm-backports (10.0)
    arch: str  # armv7 | armv8
    smp: int
    load: str  # canonical load text ("hot:256", "seed+hot:256@1"); shmem: dirty | remap
    accel: str  # tcg | kvm | auto
    hold_s: float = 0.0  # 0: no hold phase before convergence
    bandwidth: str | None = None  # tc rate of the lab link; None: unshaped

    @property
    def key(self) -> str:
        """Stable and unique per cell; what results files use to resume."""
        return "/".join(
            [
                self.scenario,
                self.suite,
                self.arch,
                f"smp{self.smp}",
                self.load,
                self.accel,
                f"hold{_number(self.hold_s)}",
                self.link,
            ]
        )

    @property
    def sort_key(self) -> tuple[str, str, str, int, str, str, float, str]:
        """Reports list cells in this order."""
        return (
            self.scenario,
            self.suite,
            self.arch,
            self.smp,
            self.load,
            self.accel,
            self.hold_s,
            self.link,
        )

    @property
    def link(self) -> str:
        return self.bandwidth or "unshaped"

    @property
    def load_modes(self) -> tuple[str, ...]:
        return load_modes(self.load)

    def to_json(self) -> JsonObject:
        return flat_json(self)

    @classmethod
    def from_json(cls, data: Json, path: str = "$") -> Cell:
        obj = json_object(data, path, cls)
        cell = cls(
            scenario=get(obj, "scenario", str, path),
            suite=get(obj, "suite", str, path),
            arch=get(obj, "arch", str, path),
            smp=get(obj, "smp", int, path),
            load=get(obj, "load", str, path),
            accel=get(obj, "accel", str, path),
            hold_s=get(obj, "hold_s", float, path),
            bandwidth=optional(obj, "bandwidth", str, path),
        )
        if cell.scenario not in SCENARIOS:
            raise RecordError(f"{path}.scenario", f"{cell.scenario!r} is not one of {SCENARIOS}")
        return cell


@dataclass(frozen=True)
class IterationSample:
    """One pass of a migration as query-migrate (or its event) reported it."""

    t_ms: float  # since the migration started
    pass_no: int  # dirty-sync count at that moment
    transferred_bytes: int
    remaining_bytes: int
    dirty_rate_pages_s: float
    mbps: float  # transfer rate, Mbit/s

    def to_json(self) -> JsonObject:
        return flat_json(self)

    @classmethod
    def from_json(cls, data: Json, path: str = "$") -> IterationSample:
        obj = json_object(data, path, cls)
        return cls(
            t_ms=get(obj, "t_ms", float, path),
            pass_no=get(obj, "pass_no", int, path),
            transferred_bytes=get(obj, "transferred_bytes", int, path),
            remaining_bytes=get(obj, "remaining_bytes", int, path),
            dirty_rate_pages_s=get(obj, "dirty_rate_pages_s", float, path),
            mbps=get(obj, "mbps", float, path),
        )


@dataclass(frozen=True)
class MigrationTrace:
    """One migration of a run, with its per-iteration progress."""

    index: int
    total_ms: float
    downtime_ms: float
    converged: bool
    dirty_sync_count: int
    link_bps: int | None  # the shaped link; None: unshaped
    load_dirty_rate_bps: float | None  # the load's nominal dirty rate
    iterations: list[IterationSample] = field(default_factory=list)
    page_size: int = 4096  # query-migrate ram.page-size: converts pages/s to bits/s

    def to_json(self) -> JsonObject:
        return {
            "index": self.index,
            "total_ms": self.total_ms,
            "downtime_ms": self.downtime_ms,
            "converged": self.converged,
            "dirty_sync_count": self.dirty_sync_count,
            "link_bps": self.link_bps,
            "load_dirty_rate_bps": self.load_dirty_rate_bps,
            "page_size": self.page_size,
            "iterations": [sample.to_json() for sample in self.iterations],
        }

    @classmethod
    def from_json(cls, data: Json, path: str = "$") -> MigrationTrace:
        obj = json_object(data, path, cls)
        return cls(
            index=get(obj, "index", int, path),
            total_ms=get(obj, "total_ms", float, path),
            downtime_ms=get(obj, "downtime_ms", float, path),
            converged=get(obj, "converged", bool, path),
            dirty_sync_count=get(obj, "dirty_sync_count", int, path),
            link_bps=optional(obj, "link_bps", int, path),
            load_dirty_rate_bps=optional(obj, "load_dirty_rate_bps", float, path),
            page_size=get(obj, "page_size", int, path),
            iterations=[
                IterationSample.from_json(item, f"{path}.iterations[{i}]")
                for i, item in enumerate(get(obj, "iterations", list, path))
            ],
        )


@dataclass(frozen=True)
class RunRecord:
    """One run of one cell: the verdict and what it rests on."""

    cell: Cell
    run: int  # 1-based
    qemu_version: str
    verdict: str  # pass | fail | known-defect
    known_defect: str | None  # id of the matched known-defects entry
    pages_lost: int
    checks_failed: list[str]
    first_failure: str  # "" when nothing failed
    wall_seconds: float
    started_at: str  # ISO 8601
    migrations: list[MigrationTrace] = field(default_factory=list)  # may be empty (shmem)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
        if self.run < 1:
            raise ValueError(f"run {self.run} is not 1-based")

    @property
    def pair(self) -> tuple[str, int]:
        return (self.cell.key, self.run)

    def to_json(self) -> JsonObject:
        return {
            "cell": self.cell.to_json(),
            "run": self.run,
            "qemu_version": self.qemu_version,
            "verdict": self.verdict,
            "known_defect": self.known_defect,
            "pages_lost": self.pages_lost,
            "checks_failed": [name for name in self.checks_failed],
            "first_failure": self.first_failure,
            "wall_seconds": self.wall_seconds,
            "started_at": self.started_at,
            "migrations": [m.to_json() for m in self.migrations],
        }

    @classmethod
    def from_json(cls, data: Json, path: str = "$") -> RunRecord:
        obj = json_object(data, path, cls)
        verdict = get(obj, "verdict", str, path)
        if verdict not in VERDICTS:
            raise RecordError(f"{path}.verdict", f"{verdict!r} is not one of {VERDICTS}")
        run = get(obj, "run", int, path)
        if run < 1:
            raise RecordError(f"{path}.run", f"{run} is not 1-based")
        return cls(
            cell=Cell.from_json(get(obj, "cell", dict, path), f"{path}.cell"),
            run=run,
            qemu_version=get(obj, "qemu_version", str, path),
            verdict=verdict,
            known_defect=optional(obj, "known_defect", str, path),
            pages_lost=get(obj, "pages_lost", int, path),
            checks_failed=strings(get(obj, "checks_failed", list, path), f"{path}.checks_failed"),
            first_failure=get(obj, "first_failure", str, path),
            wall_seconds=get(obj, "wall_seconds", float, path),
            started_at=get(obj, "started_at", str, path),
            migrations=[
                MigrationTrace.from_json(item, f"{path}.migrations[{i}]")
                for i, item in enumerate(get(obj, "migrations", list, path))
            ],
        )


@dataclass(frozen=True)
class FrontierPoint:
    """One migration on one link at one dirty rate: did it converge?"""

    link: str  # 100mbit | 1gbit | unshaped
    link_bps: int | None
    dirty_rate_bps: float
    converged: bool
    arch: str
    qemu_version: str

    def to_json(self) -> JsonObject:
        return flat_json(self)

    @classmethod
    def from_json(cls, data: Json, path: str = "$") -> FrontierPoint:
        obj = json_object(data, path, cls)
        return cls(
            link=get(obj, "link", str, path),
            link_bps=optional(obj, "link_bps", int, path),
            dirty_rate_bps=get(obj, "dirty_rate_bps", float, path),
            converged=get(obj, "converged", bool, path),
            arch=get(obj, "arch", str, path),
            qemu_version=get(obj, "qemu_version", str, path),
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
