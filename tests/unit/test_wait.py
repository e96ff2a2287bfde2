"""The one wait helper: returns what the condition found, never falls through."""

from __future__ import annotations

import asyncio
import time

import pytest

from testbed.wait import WaitAborted, WaitTimeout, await_until, wait_until


def test_returns_the_first_value_found() -> None:
    calls = iter([None, None, 7])
    assert wait_until(lambda: next(calls), what="seven", timeout=5, interval=0) == 7


def test_a_timeout_names_what_and_the_last_thing_seen() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        wait_until(lambda: None, what="the marker", timeout=0.2, last=lambda: "'boot...'")
    assert time.monotonic() - started >= 0.2
    assert str(raised.value) == "no the marker within 0 s (last seen: 'boot...')"
    assert isinstance(raised.value, TimeoutError)


def test_a_gone_subject_stops_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(WaitAborted, match="gave up waiting for QMP: QEMU exited"):
        wait_until(lambda: None, what="QMP", timeout=30, gone=lambda: "QEMU exited")
    assert time.monotonic() - started < 1


def test_the_async_helper_behaves_the_same() -> None:
    calls = iter([None, "ready"])

    async def check() -> str | None:
        return next(calls)

    assert asyncio.run(await_until(check, what="x", timeout=5, interval=0)) == "ready"

    async def never() -> str | None:
        return None

    with pytest.raises(WaitTimeout, match="no y within 0 s"):
        asyncio.run(await_until(never, what="y", timeout=0.1))
