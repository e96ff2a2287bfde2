"""Runs side by side (``testbed run all``): tracks of runs, each track's runs one after
the other, all tracks at once, each in a thread of its own, on one lab that is up.

Each run gets the tracks' shared event (see :class:`testbed.scenarios.common.LabRun`).
A Ctrl-C reaches only the calling thread: it sets the event, and each run in progress
then cleans up as after a Ctrl-C of its own and raises :class:`Interrupted`, which says
what it stopped.  A run that ends in an error (not a verdict: a refusal, a bug) stops
the other tracks the same way, and its error is what the caller gets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from testbed.errors import Interrupted
from testbed.scenarios.common import NOTHING_CLEANED, second_ctrl_c_waits

LOG = logging.getLogger(__name__)

T = TypeVar("T")
Run = Callable[[threading.Event], T]

JOIN_SLICE_S = 0.2  # the calling thread wakes this often, so that a Ctrl-C reaches it


def run_tracks(tracks: Sequence[Sequence[Run[T]]]) -> list[T]:
    """Every track's runs; the results in track order, then run order."""
    cancel = threading.Event()
    results: list[list[T]] = [[] for _ in tracks]
    raised: list[BaseException | None] = [None] * len(tracks)
    # Each track says when it has ended.  Not Thread.join: on CPython 3.11 a join that a
    # Ctrl-C interrupts can mark a running thread stopped (bpo-45274), and a later join
    # then returns at once, before the track has said what it stopped.
    ended = [threading.Event() for _ in tracks]

    def work(index: int) -> None:
        try:
            for run in tracks[index]:
                if cancel.is_set():
                    return
                results[index].append(run(cancel))
        except BaseException as exc:  # handed to the calling thread
            LOG.info("track %d ended with %s: %s", index, type(exc).__name__, exc)
            raised[index] = exc
            cancel.set()
        finally:
            ended[index].set()

    threads = [
        threading.Thread(target=work, args=(index,), name=f"track {index}", daemon=True)
        for index in range(len(tracks))
    ]
    try:
        for thread in threads:
            thread.start()
        for track_ended in ended:
            while not track_ended.wait(JOIN_SLICE_S):
                pass
    except KeyboardInterrupt:  # also between two starts: each started thread is waited for
        cancel.set()
        with second_ctrl_c_waits():
            for index, thread in enumerate(threads):
                if thread.ident is not None:  # it runs, or has run: it ends soon
                    ended[index].wait()
        raise Interrupted(joined_summaries(raised)) from None
    errors = [exc for exc in raised if exc is not None and not isinstance(exc, Interrupted)]
    if errors:
        raise errors[0]
    if any(raised):  # interrupted from elsewhere (a run's own SIGTERM handling)
        raise Interrupted(joined_summaries(raised))
    return [result for track in results for result in track]


def joined_summaries(raised: Sequence[BaseException | None]) -> str:
    """What the interrupted runs said they stopped, as one clause."""
    said = [exc.summary for exc in raised if isinstance(exc, Interrupted)]
    meaningful = [text for text in said if text and text != NOTHING_CLEANED]
    return "; ".join(meaningful) or NOTHING_CLEANED
