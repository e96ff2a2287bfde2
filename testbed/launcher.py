"""The ``testbed`` program's entry point (and ``python -m testbed``'s).

It is light on purpose: the command line's imports take a few tenths of a second, and a
Ctrl-C that lands in them, or in the parsing before a command starts, has nothing to stop
or remove: one line and exit 130, not a traceback and a death by SIGINT."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

NOTHING_STARTED = "interrupted: nothing to stop or remove\n"


def entry() -> NoReturn:
    """The program: ``testbed.cli.main`` as the process's own command.  (main handles a
    Ctrl-C during its command itself, and exits 130 there.)"""
    try:
        from testbed.cli import main

        code = main(program=True)
    except KeyboardInterrupt:
        sys.stderr.write(NOTHING_STARTED)
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
