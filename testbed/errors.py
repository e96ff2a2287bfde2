"""Errors a user can cause or fix: printed as one line, exit status non-zero."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix.  ``str()`` is one line: the problem, then the fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}: {self.fix}" if self.fix else self.problem


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a command, after the command cleaned up; ``summary``
    says exactly what it stopped and removed."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


class Cancelled(KeyboardInterrupt):
    """A run told to stop by the command that runs it beside another (``run all`` after
    its Ctrl-C): raised from the run's agent calls, in the run's own thread, so that the
    run cleans up exactly as after a Ctrl-C of its own."""
