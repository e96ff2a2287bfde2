"""testbed.futures.result: a Ctrl-C that CPython turned into a RuntimeError on its way out
of a wait is a Ctrl-C again; anything else is left as it was."""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from testbed import futures


class LockLost(Future[int]):
    """A future whose wait ends the way the suite saw it once: the `with` around the
    condition fails to release, while a KeyboardInterrupt propagates."""

    def result(self, timeout: float | None = None) -> int:
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("cannot release un-acquired lock")


class Broken(Future[int]):
    def result(self, timeout: float | None = None) -> int:
        raise RuntimeError("a bug of its own")


def test_the_hidden_ctrl_c_is_raised() -> None:
    with pytest.raises(RuntimeError):  # what the scenario's except KeyboardInterrupt missed
        LockLost().result()
    with pytest.raises(KeyboardInterrupt):
        futures.result(LockLost())


def test_other_errors_and_results_pass_through() -> None:
    with pytest.raises(RuntimeError, match="a bug of its own"):
        futures.result(Broken())
    done: Future[int] = Future()
    done.set_result(7)
    assert futures.result(done) == 7
    with pytest.raises(FutureTimeout):
        futures.result(Future(), 0.01)
