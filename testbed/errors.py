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
