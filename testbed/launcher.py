"""The ``testbed`` program's entry point (and ``python -m testbed``'s).

It is light on purpose: the command line's imports take a few tenths of a second, and a
Ctrl-C that lands in them, or in the parsing before a command starts, has nothing to stop
or remove: one line and exit 130, not a traceback and a death by SIGINT.

It also keeps a Ctrl-C from being lost: Python raises KeyboardInterrupt wherever the main
thread is, and when that is a finalizer (a weakref callback the garbage collector runs,
a ``__del__``) the exception is printed as "Exception ignored" and dropped, and the
command runs on to its end.  The program sends such a Ctrl-C to itself again, to be
raised where the command can act on it."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import NoReturn

NOTHING_STARTED = "interrupted: nothing to stop or remove\n"
REDELIVER_AFTER_S = 0.01  # the main thread has usually left the finalizer by then
_in_hook = False  # the main thread is inside redeliver_lost_ctrl_c
_resend = threading.Event()  # set: a swallowed Ctrl-C is to be sent again
_resender: threading.Thread | None = None


def _resend_loop() -> None:
    while True:
        _resend.wait()
        time.sleep(REDELIVER_AFTER_S)
        _resend.clear()
        os.kill(os.getpid(), signal.SIGINT)


def _ask_resend() -> None:
    """SIGINT to this process again, from another thread, a moment later."""
    global _resender
    _resend.set()
    if _resender is None:
        _resender = threading.Thread(target=_resend_loop, name="ctrl-c resend", daemon=True)
        _resender.start()


def interrupt(signum: int, frame: object) -> None:
    """SIGINT's handler: Python's own (KeyboardInterrupt), except while the main thread is
    in the unraisable hook, where the exception would be dropped again: the signal is
    asked for again instead, to land once the hook has returned (on a busy machine the
    hook may still run when the first resend comes)."""
    if _in_hook:
        _resend.set()
        return
    raise KeyboardInterrupt


def redeliver_lost_ctrl_c(unraisable: sys.UnraisableHookArgs) -> None:
    """``sys.unraisablehook``: a KeyboardInterrupt that a finalizer in the main thread
    swallowed is raised again, by the signal again; anything else goes to Python's hook."""
    global _in_hook
    if (
        unraisable.exc_type is KeyboardInterrupt
        and threading.current_thread() is threading.main_thread()
    ):
        _in_hook = True
        try:
            # from another thread: raised here, inside the hook, it would be dropped again
            _ask_resend()
            import logging

            logging.getLogger(__name__).info(
                "a Ctrl-C raised in a finalizer was lost; sending it again"
            )
        finally:
            _in_hook = False
        return
    sys.__unraisablehook__(unraisable)


def keep_ctrl_c() -> None:
    """Install both: the hook that resends a swallowed Ctrl-C and the handler that holds
    it back while that hook runs.  A SIGINT that the parent set to be ignored (a job
    that a script started in the background) stays ignored."""
    sys.unraisablehook = redeliver_lost_ctrl_c
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)


def entry() -> NoReturn:
    """The program: ``testbed.cli.main`` as the process's own command.  (main handles a
    Ctrl-C during its command itself, and exits 130 there.)"""
    keep_ctrl_c()
    try:
        from testbed.cli import main

        code = main(program=True)
    except KeyboardInterrupt:
        sys.stderr.write(NOTHING_STARTED)
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
