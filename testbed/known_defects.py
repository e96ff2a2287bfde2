"""Known QEMU defects as data (``testbed/data/known-defects.toml``), and the rule that turns
a failing run into ``known-defect``: EVERY failed check must be one the entry lists, and
every condition of the entry must hold.  Anything else stays a FAIL.

A malformed file is one :class:`KnownDefectsError` line naming the file, the entry and the
problem."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from testbed.errors import UserError
from testbed.matrix.records import SCENARIOS, Cell

LOG = logging.getLogger(__name__)

ANY = "*"
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_ACCELS = ("tcg", "kvm")
_ARCHES = ("armv7", "armv8")
_REQUIRED = ("id", "title", "scenario", "accels", "arches", "loads", "checks", "note")
_OPTIONAL = (
    "introduced",
    "fixed",
    "smp_min",
    "message_contains",
    "message_in_every_failure",
    "upstream_fix",
)
_FIX_KEYS = ("commit", "version", "subject")

Version = tuple[int, int, int]
_Fail = Callable[[str, str], "KnownDefectsError"]


class KnownDefectsError(UserError):
    def __init__(self, source: str, place: str, problem: str) -> None:
        super().__init__(f"{source}: {place}: {problem}", "fix the known-defects file")


def parse_version(text: str) -> Version | None:
    """``10.0.2``, ``9.0``, ``1:7.2.22+dfsg-7`` -> (major, minor, micro); None if none."""
    match = _VERSION.search(text)
    if match is None:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


@dataclass(frozen=True)
class UpstreamFix:
    commit: str
    version: str | None  # the first release that has it
    subject: str


@dataclass(frozen=True)
class KnownDefect:
    id: str
    title: str
    scenario: str  # migration | shmem
    accels: tuple[str, ...]  # tcg, kvm, or *
    arches: tuple[str, ...]  # armv7, armv8, or *
    loads: tuple[str, ...]  # load modes (hot, dirty, ...), or *
    checks: tuple[str, ...]  # the checks whose failure this defect produces
    note: str
    introduced: str | None = None  # first affected QEMU version (inclusive)
    fixed: str | None = None  # first version this entry no longer covers (exclusive)
    smp_min: int = 1
    message_contains: str | None = None  # text some failure message must contain
    message_in_every_failure: bool = False  # ... every failure message, not just one
    upstream_fix: UpstreamFix | None = None

    def affects(self, qemu_version: str) -> bool:
        version = parse_version(qemu_version)
        if version is None:
            return False
        low = parse_version(self.introduced) if self.introduced else None
        high = parse_version(self.fixed) if self.fixed else None
        return (low is None or version >= low) and (high is None or version < high)

    def mismatch(
        self,
        cell: Cell,
        qemu_version: str,
        failed_checks: Sequence[str],
        messages: Sequence[str],
        accel: str | None = None,
    ) -> str | None:
        """The first condition that does not hold (for logs and tests), None if all do."""
        accel = accel or cell.accel
        if not failed_checks:
            return "nothing failed"
        if cell.scenario != self.scenario:
            return f"scenario {cell.scenario} is not {self.scenario}"
        if not self.affects(qemu_version):
            return f"QEMU {qemu_version} is outside [{self.introduced}, {self.fixed})"
        if ANY not in self.accels and accel not in self.accels:
            return f"accel {accel} is not one of {', '.join(self.accels)}"
        if ANY not in self.arches and cell.arch not in self.arches:
            return f"arch {cell.arch} is not one of {', '.join(self.arches)}"
        if cell.smp < self.smp_min:
            return f"smp {cell.smp} < {self.smp_min}"
        if ANY not in self.loads and not set(cell.load_modes) & set(self.loads):
            return f"load {cell.load} has none of the modes {', '.join(self.loads)}"
        unexplained = [check for check in failed_checks if check not in self.checks]
        if unexplained:
            return f"failed check {unexplained[0]} is not one this defect produces"
        if self.message_contains is not None:
            holds = [self.message_contains in message for message in messages]
            if self.message_in_every_failure and not (holds and all(holds)):
                return f"a failure message does not contain {self.message_contains!r}"
            if not any(holds):
                return f"no failure message contains {self.message_contains!r}"
        return None


def match(
    defects: Iterable[KnownDefect],
    cell: Cell,
    qemu_version: str,
    failed_checks: Sequence[str],
    messages: Sequence[str] = (),
    accel: str | None = None,
) -> KnownDefect | None:
    """The first entry that explains this failure, or None (the run stays a FAIL).

    ``accel`` is the accelerator the run actually used (``auto`` resolved); by default the
    cell's, and an unresolved ``auto`` matches only entries that list ``*``."""
    for defect in defects:
        why_not = defect.mismatch(cell, qemu_version, failed_checks, messages, accel)
        if why_not is None:
            LOG.info("%s run on QEMU %s: known defect %s", cell.key, qemu_version, defect.id)
            return defect
        LOG.debug("%s: not %s: %s", cell.key, defect.id, why_not)
    return None


def load_defects(path: str | Path | None = None) -> list[KnownDefect]:
    """The entries of ``path``, by default the package's ``data/known-defects.toml``."""
    if path is None:
        resource = resources.files("testbed") / "data" / "known-defects.toml"
        return parse_defects(resource.read_text(encoding="utf-8"), "known-defects.toml")
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{source}: cannot read: {exc.strerror}") from None
    return parse_defects(text, str(source))


def parse_defects(text: str, source: str) -> list[KnownDefect]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KnownDefectsError(source, "syntax", str(exc)) from None
    unknown = sorted(set(data) - {"defect"})
    if unknown:
        raise KnownDefectsError(source, unknown[0], "unknown key (only [[defect]] tables)")
    entries = data.get("defect", [])
    if not isinstance(entries, list):
        raise KnownDefectsError(source, "defect", "must be an array of tables: [[defect]]")
    defects = [_entry(source, i, entry) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for i, defect in enumerate(defects):
        if defect.id in seen:
            raise KnownDefectsError(source, f"defect[{i}] ({defect.id})", "duplicate id")
        seen.add(defect.id)
    return defects


def _entry(source: str, index: int, entry: object) -> KnownDefect:
    place = f"defect[{index}]"
    if not isinstance(entry, dict):
        raise KnownDefectsError(source, place, "must be a table")
    if isinstance(entry.get("id"), str):
        place = f"defect[{index}] ({entry['id']})"

    def fail(key: str, problem: str) -> KnownDefectsError:
        return KnownDefectsError(source, f"{place}.{key}" if key else place, problem)

    for key in _REQUIRED:
        if key not in entry:
            raise fail(key, "missing")
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise fail(unknown[0], "unknown key")

    def text(key: str, optional: bool = False) -> str | None:
        value = entry.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail(key, "must be a non-empty string")
        return value

    def words(key: str, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
        value = entry[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise fail(key, "must be a non-empty list of strings")
        for word in value:
            if allowed is not None and word not in (*allowed, ANY):
                raise fail(key, f"{word!r} is not one of {', '.join((*allowed, ANY))}")
        return tuple(value)

    defect_id = text("id") or ""
    if not _ID.match(defect_id):
        raise fail("id", f"{defect_id!r}: use lower-case letters, digits, '.' and '-'")
    scenario = text("scenario") or ""
    if scenario not in SCENARIOS:
        raise fail("scenario", f"{scenario!r} is not one of {', '.join(SCENARIOS)}")
    bounds: list[Version | None] = []
    for key in ("introduced", "fixed"):
        version = text(key, optional=True)
        parsed = None if version is None else parse_version(version)
        if version is not None and parsed is None:
            raise fail(key, f"{version!r} is not a QEMU version like 9.0.0")
        bounds.append(parsed)
    low, high = bounds
    if low is not None and high is not None and low >= high:
        raise fail("fixed", f"{entry['fixed']} is not after introduced {entry['introduced']}")
    smp_min = entry.get("smp_min", 1)
    if not isinstance(smp_min, int) or isinstance(smp_min, bool) or smp_min < 1:
        raise fail("smp_min", "must be an integer of 1 or more")
    every = entry.get("message_in_every_failure", False)
    if not isinstance(every, bool):
        raise fail("message_in_every_failure", "must be true or false")
    if every and entry.get("message_contains") is None:
        raise fail("message_in_every_failure", "needs message_contains")
    checks = words("checks", None)
    if ANY in checks:
        raise fail("checks", "must name the checks (no *): a defect never explains every check")
    return KnownDefect(
        id=defect_id,
        title=text("title") or "",
        scenario=scenario,
        accels=words("accels", _ACCELS),
        arches=words("arches", _ARCHES),
        loads=words("loads", None),
        checks=checks,
        note=text("note") or "",
        introduced=text("introduced", optional=True),
        fixed=text("fixed", optional=True),
        smp_min=smp_min,
        message_contains=text("message_contains", optional=True),
        message_in_every_failure=every,
        upstream_fix=_fix(entry.get("upstream_fix"), fail),
    )


def _fix(value: object, fail: _Fail) -> UpstreamFix | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail("upstream_fix", "must be a table { commit, version, subject }")
    unknown = sorted(set(value) - set(_FIX_KEYS))
    if unknown:
        raise fail(f"upstream_fix.{unknown[0]}", "unknown key")
    for key in ("commit", "subject"):
        if not isinstance(value.get(key), str) or not value[key].strip():
            raise fail(f"upstream_fix.{key}", "must be a non-empty string")
    version = value.get("version")
    if version is not None and (not isinstance(version, str) or parse_version(version) is None):
        raise fail("upstream_fix.version", f"{version!r} is not a QEMU version like 9.0.0")
    if not re.fullmatch(r"[0-9a-f]{7,40}", value["commit"]):
        raise fail("upstream_fix.commit", f"{value['commit']!r} is not a git commit id")
    return UpstreamFix(commit=value["commit"], version=version, subject=value["subject"])
