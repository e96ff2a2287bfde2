"""Waiting, in one place: poll a condition until it holds, and never fall through.

A wait that runs out raises :class:`WaitTimeout`, which names what it waited for and the
last thing it saw; a wait whose subject is gone (``gone()`` returns why) stops at once
with :class:`WaitAborted`.  Standard library only: the node agent uses it too."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    def __init__(self, what: str, timeout: float, last: str) -> None:
        super().__init__(f"no {what} within {timeout:.0f} s (last seen: {last})")
        self.what = what
        self.last = last


class WaitAborted(RuntimeError):
    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"gave up waiting for {what}: {why}")
        self.what = what
        self.why = why


def _nothing() -> str:
    return "nothing"


def _present() -> str | None:
    return None


def _give_up_if_due(
    what: str,
    timeout: float,
    deadline: float,
    last: Callable[[], str],
    gone: Callable[[], str | None],
) -> None:
    """Between two tries: raise when what was waited for is gone or the time is up."""
    why = gone()
    if why is not None:
        raise WaitAborted(what, why)
    if time.monotonic() >= deadline:
        raise WaitTimeout(what, timeout, last())


def wait_until(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    last: Callable[[], str] = _nothing,
    gone: Callable[[], str | None] = _present,
    interval: float = 0.05,
) -> T:
    """``check()`` until it returns something other than None; that is returned."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        _give_up_if_due(what, timeout, deadline, last, gone)
        time.sleep(interval)


async def await_until(
    check: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    timeout: float,
    last: Callable[[], str] = _nothing,
    gone: Callable[[], str | None] = _present,
    interval: float = 0.05,
) -> T:
    """The same, for a coroutine ``check``."""
    import asyncio  # here: the host's commands, which never await, need not import it

    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found is not None:
            return found
        _give_up_if_due(what, timeout, deadline, last, gone)
        await asyncio.sleep(interval)
