"""Waiting on a future in the main thread, where a Ctrl-C lands.

Once in a suite run, a Ctrl-C during such a wait ended a command with exit 1 and
``RuntimeError: cannot release un-acquired lock``, raised by the ``with`` around
CPython's ``Condition.wait`` while the KeyboardInterrupt was on its way out: the
scenarios' ``except KeyboardInterrupt`` (which stops what the run started and says so)
never saw it.  :func:`result` gives the KeyboardInterrupt back.  (Not reproduced on
demand: 2,000 interrupted waits in a loop all raised KeyboardInterrupt.)"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def result(future: Future[T], timeout: float | None = None) -> T:
    """``future.result(timeout)``; a RuntimeError raised while a KeyboardInterrupt was
    propagating is that KeyboardInterrupt."""
    try:
        return future.result(timeout)
    except RuntimeError as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise exc.__context__ from None
        raise
