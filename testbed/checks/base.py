"""What every check produces, and how check results become a verdict.

A check is a named object with a one-line description and a pure ``judge`` method that
turns observations into a :class:`CheckResult` (pass or fail, a one-line summary, the
evidence).  A scenario's verdict is PASS when every check passed; a failure that matches
a known QEMU defect (``testbed/data/known-defects.toml``) makes it ``known-defect``;
anything else is FAIL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from testbed.codec import Json


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"  # could not apply (e.g. e2fsck of a disk kept in use by --keep)


class VerdictKind(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    KNOWN_DEFECT = "known-defect"


@dataclass(frozen=True)
class CheckResult:
    check: str  # the check's name, e.g. "ram-pages"
    subject: str  # what it judged, e.g. "migration 1 (gauss-a -> gauss-b)"
    outcome: Outcome
    summary: str  # one line
    evidence: dict[str, Json] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL

    def line(self) -> str:
        return f"{self.subject}: {self.check}: {self.summary}"


def passed(check: str, subject: str, summary: str, **evidence: Json) -> CheckResult:
    return CheckResult(check, subject, Outcome.PASS, summary, dict(evidence))


def failed(check: str, subject: str, summary: str, **evidence: Json) -> CheckResult:
    return CheckResult(check, subject, Outcome.FAIL, summary, dict(evidence))


def skipped(check: str, subject: str, summary: str, **evidence: Json) -> CheckResult:
    return CheckResult(check, subject, Outcome.SKIPPED, summary, dict(evidence))


def verdict_of(results: Sequence[CheckResult], known: bool) -> VerdictKind:
    if not any(r.failed for r in results):
        return VerdictKind.PASS
    return VerdictKind.KNOWN_DEFECT if known else VerdictKind.FAIL


def first_failure(results: Sequence[CheckResult]) -> CheckResult | None:
    return next((r for r in results if r.failed), None)
