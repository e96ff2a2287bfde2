"""run_tracks: tracks of runs side by side, their results in order, a Ctrl-C or a run's
error stopping every track (testbed.scenarios.beside).  The runs are stand-ins that
behave as scenarios do: a cancelled run cleans up and raises Interrupted."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from testbed.errors import Cancelled, Interrupted, UserError
from testbed.scenarios.beside import joined_summaries, run_tracks

Run = Callable[[threading.Event], str]


def quick(name: str, log: list[str]) -> Run:
    def run(cancel: threading.Event) -> str:
        log.append(name)
        return name

    return run


def until_cancelled(name: str, started: threading.Event, log: list[str]) -> Run:
    """A run that waits on its agent calls until cancelled, then cleans up as after its
    own Ctrl-C."""

    def run(cancel: threading.Event) -> str:
        log.append(name)
        started.set()
        try:
            if cancel.wait(5):
                raise Cancelled(f"{name} abandoned")
            raise AssertionError(f"{name} was never cancelled")
        except KeyboardInterrupt:
            raise Interrupted(f"stopped {name}") from None

    return run


def test_results_come_in_track_order_then_run_order() -> None:
    log: list[str] = []

    def slow(cancel: threading.Event) -> str:
        time.sleep(0.2)
        return "m1"

    results = run_tracks([[slow, quick("m2", log)], [quick("s1", log), quick("s2", log)]])
    assert results == ["m1", "m2", "s1", "s2"]


def test_the_tracks_run_at_once() -> None:
    both = threading.Barrier(2, timeout=5)

    def meets(name: str) -> Run:
        def run(cancel: threading.Event) -> str:
            both.wait()  # breaks (and raises) unless the other track runs meanwhile
            return name

        return run

    assert run_tracks([[meets("a")], [meets("b")]]) == ["a", "b"]


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's own SIGINT handler, as the testbed command has it: a test runner started
    as a background job inherits an ignored SIGINT, and then a simulated Ctrl-C does
    nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_stops_each_run_in_progress_and_starts_no_further_run() -> None:
    log: list[str] = []
    first, second = threading.Event(), threading.Event()
    tracks = [
        [until_cancelled("m1", first, log), quick("m2", log)],
        [until_cancelled("s1", second, log), quick("s2", log)],
    ]

    def ctrl_c_when_both_run() -> None:
        first.wait(5)
        second.wait(5)
        _thread.interrupt_main()

    threading.Thread(target=ctrl_c_when_both_run, daemon=True).start()
    with pytest.raises(Interrupted) as raised:
        run_tracks(tracks)
    assert raised.value.summary == "stopped m1; stopped s1"
    assert log == ["m1", "s1"] or log == ["s1", "m1"]


def test_a_run_that_fails_stops_the_other_track_and_its_error_is_raised() -> None:
    log: list[str] = []
    started = threading.Event()

    def refused(cancel: threading.Event) -> str:
        started.wait(5)
        raise UserError("gauss-a already runs a guest in this run's way")

    with pytest.raises(UserError, match="already runs a guest"):
        run_tracks([[until_cancelled("m1", started, log), quick("m2", log)], [refused]])
    assert log == ["m1"]


def test_nothing_stopped_is_said_once() -> None:
    assert joined_summaries([None, None]) == "nothing to stop or remove"
    assert (
        joined_summaries([Interrupted("nothing to stop or remove"), Interrupted("stopped x")])
        == "stopped x"
    )


def test_a_ctrl_c_inside_start_leaves_the_late_track_unstarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Ctrl-C lands inside the second Thread.start(), after the thread was started but
    before it ran (as when it comes while start() waits for the new thread): the first
    track stops what it started; the second, once it runs, sees the cancel and starts
    nothing, so nothing is left running that the summary does not name."""
    log: list[str] = []
    started = [threading.Event(), threading.Event()]
    real_start_new_thread = threading._start_new_thread  # type: ignore[attr-defined]
    late_track_ended = threading.Event()

    def start_late_then_ctrl_c(function: Callable[..., None], args: tuple[object, ...]) -> int:
        if getattr(getattr(function, "__self__", None), "name", "") != "track 1":
            return int(real_start_new_thread(function, args))
        gate = threading.Event()

        def after_the_gate(*inner: object) -> None:
            gate.wait(5)
            function(*inner)
            late_track_ended.set()

        real_start_new_thread(after_the_gate, args)
        real_start_new_thread(lambda: (time.sleep(0.3), gate.set()), ())
        raise KeyboardInterrupt  # the thread exists, and has not run yet

    monkeypatch.setattr(threading, "_start_new_thread", start_late_then_ctrl_c)
    with pytest.raises(Interrupted) as caught:
        run_tracks(
            [[until_cancelled("m1", started[0], log)], [until_cancelled("s1", started[1], log)]]
        )
    assert caught.value.summary == "stopped m1"
    assert late_track_ended.wait(5)
    assert log == ["m1"]
