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
from typing import NoReturn

NOTHING_STARTED = "interrupted: nothing to stop or remove\n"
REDELIVER_AFTER_S = 0.01  # the main thread has left the finalizer by then


def redeliver_lost_ctrl_c(unraisable: sys.UnraisableHookArgs) -> None:
    """``sys.unraisablehook``: a KeyboardInterrupt that a finalizer in the main thread
    swallowed is raised again, by the signal again; anything else goes to Python's hook."""
    if (
        unraisable.exc_type is KeyboardInterrupt
        and threading.current_thread() is threading.main_thread()
    ):
        import logging

        logging.getLogger(__name__).info(
            "a Ctrl-C raised in a finalizer was lost; sending it again"
        )
        # From another thread, a moment later: raised here, inside the hook, it would be
        # dropped again.  (Ignored if the command has ended meanwhile.)
        resend = threading.Timer(REDELIVER_AFTER_S, os.kill, (os.getpid(), signal.SIGINT))
        resend.daemon = True
        resend.start()
        return
    sys.__unraisablehook__(unraisable)


def entry() -> NoReturn:
    """The program: ``testbed.cli.main`` as the process's own command.  (main handles a
    Ctrl-C during its command itself, and exits 130 there.)"""
    sys.unraisablehook = redeliver_lost_ctrl_c
    try:
        from testbed.cli import main

        code = main(program=True)
    except KeyboardInterrupt:
        sys.stderr.write(NOTHING_STARTED)
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
