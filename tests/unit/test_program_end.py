"""The ``testbed`` program's end (testbed.cli.entry): once its command has ended, a
Ctrl-C has nothing left to interrupt and is ignored (it must not land in the
interpreter's shutdown and turn the exit status into a death by SIGINT); a SIGTERM then
ends the process as it would any other.  A command called in-process (main()) leaves
the handlers as they were."""

from __future__ import annotations

import contextlib
import io
import signal
import sys
from collections.abc import Iterator
from unittest import mock

import pytest

from testbed.cli import entry, main

BAD = ["run", "migration", "--load", "nosuch"]  # refused before anything is created


@pytest.fixture
def handlers() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous[0])
    signal.signal(signal.SIGTERM, previous[1])


@pytest.mark.usefixtures("handlers")
def test_the_program_ignores_ctrl_c_once_its_command_has_ended() -> None:
    with (
        mock.patch.object(sys, "argv", ["testbed", *BAD]),
        contextlib.redirect_stderr(io.StringIO()) as err,
        pytest.raises(SystemExit) as ended,
    ):
        entry()
    assert ended.value.code == 2 and "nosuch" in err.getvalue()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.usefixtures("handlers")
def test_a_command_called_in_process_leaves_ctrl_c_alone() -> None:
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(BAD) == 2
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
