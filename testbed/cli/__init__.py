"""The ``testbed`` command line: parses, calls the library, prints.  Nothing else.

One module per verb group: images, boot, lab (up, down, status and route debugging)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rich.markup import escape

from testbed import __version__
from testbed.cli import boot, guest, images, lab, matrix, migrate, run
from testbed.cli.output import err
from testbed.errors import Interrupted, UserError


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the problem and where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="testbed",
        description="ARM KVM/QEMU dirty-page logging validation in Docker containers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    images.register(sub)
    boot.register(sub)
    lab.register(sub)
    run.register(sub)
    guest.register(sub)
    migrate.register(sub)
    matrix.register(sub)
    return parser


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _exit_interrupted() -> NoReturn:
    """Exit 130 now.  (CPython notes a KeyboardInterrupt that went through an exec(), as
    in an import that Ctrl-C cut short, and would otherwise end the process by SIGINT.)"""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def main(argv: Sequence[str] | None = None, program: bool = False) -> int:
    """One command.  ``program``: this is the process's own command, which ends with it;
    once the command has ended (its result printed, what it started stopped), a Ctrl-C
    has nothing left to interrupt and is ignored, so that it cannot land in the
    interpreter's shutdown and turn the exit status into a death by SIGINT."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # `testbed exec NODE [--lab L] -- CMD...`: everything after the first -- is the command
    rest: list[str] | None = None
    if "--" in words:
        at = words.index("--")
        words, rest = words[:at], words[at + 1 :]
    args = parser.parse_args(words)
    if rest is not None:
        if not hasattr(args, "cmd"):
            parser.error(f"unrecognized arguments: -- {' '.join(rest)}")
        args.cmd = list(args.cmd) + rest
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # SIGTERM unwinds like Ctrl-C, so every `finally` removes what it created.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        # the text as is: no rich markup ("[x]") or emoji codes (":abc:") taken from it
        err.print(
            f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True, emoji=False
        )
        return 2
    except Interrupted as exc:
        err.print(f"interrupted: {exc.summary}", highlight=False, markup=False)
        _exit_interrupted()
    except KeyboardInterrupt:
        err.print("interrupted")
        _exit_interrupted()
    finally:
        if program:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
