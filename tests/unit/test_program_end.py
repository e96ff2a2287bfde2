"""The ``testbed`` program's start and end (testbed.launcher.entry).  A Ctrl-C while the
command line loads is one line and exit 130.  Once its command has ended, a
Ctrl-C has nothing left to interrupt and is ignored (it must not land in the
interpreter's shutdown and turn the exit status into a death by SIGINT); a SIGTERM then
ends the process as it would any other.  A command called in-process (main()) leaves
the handlers as they were."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
from collections.abc import Iterator
from unittest import mock

import pytest

from testbed.cli import main
from testbed.launcher import entry
from tests.conftest import default_sigint

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


# The program, with the import of the command line cut short by a Ctrl-C (a KeyboardInterrupt
# raised inside the import machinery, as the signal's handler would raise it there).
CUT_IMPORT = """
import sys

class CtrlC:
    def find_spec(self, name, path, target=None):
        if name == "testbed.cli":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
from testbed.launcher import entry
sys.argv = ["testbed", "status"]
entry()
"""


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CUT_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "interrupted: nothing to stop or remove\n"


def child(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a Python of its own, whose SIGINT is Python's default."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=default_sigint,
    )


# A Ctrl-C whose KeyboardInterrupt is raised inside a finalizer (here a weakref callback)
LOST_IN_A_FINALIZER = """
import sys, time, weakref
from testbed.launcher import keep_ctrl_c

keep_ctrl_c()

class Held:
    pass

def finalizer(ref):
    raise KeyboardInterrupt

held = Held()
ref = weakref.ref(held, finalizer)
try:
    del held  # the callback runs here; its KeyboardInterrupt is unraisable
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        time.sleep(0.001)
except KeyboardInterrupt:
    print("raised where it can act")
else:
    print("lost")
"""


# ... and the hook is slow (its log line waits on a blocked stderr): the Ctrl-C sent again
# comes while the hook still runs
SLOW_HOOK = LOST_IN_A_FINALIZER.replace(
    "class Held:",
    """import logging
class Slow(logging.Handler):
    def emit(self, record):
        time.sleep(0.3)
logging.getLogger("testbed.launcher").addHandler(Slow())
logging.getLogger("testbed.launcher").setLevel(logging.INFO)

class Held:""",
)


def test_a_ctrl_c_swallowed_by_a_finalizer_is_raised_again() -> None:
    proc = child(LOST_IN_A_FINALIZER)
    assert proc.stdout == "raised where it can act\n", proc.stdout + proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    # without the hook, Python drops it: the control that the test means something
    plain = LOST_IN_A_FINALIZER.replace("keep_ctrl_c()", "")
    proc = child(plain)
    assert proc.stdout == "lost\n" and "Exception ignored" in proc.stderr, proc.stderr


def test_a_ctrl_c_sent_again_while_the_hook_still_runs_is_not_lost() -> None:
    proc = child(SLOW_HOOK)
    assert proc.stdout == "raised where it can act\n", proc.stdout + proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    # with the hook alone (Python's SIGINT handler), the second one is dropped in the hook
    hook_only = SLOW_HOOK.replace(
        "keep_ctrl_c()", "sys.unraisablehook = testbed.launcher.redeliver_lost_ctrl_c"
    ).replace("import sys, time", "import sys, time, testbed.launcher")
    proc = child(hook_only)
    assert proc.stdout == "lost\n" and "in sys.unraisablehook" in proc.stderr, proc.stderr


def test_an_ignored_ctrl_c_stays_ignored() -> None:
    """A job that a script starts in the background inherits SIGINT ignored: the program
    leaves it so (its handler would make it answer the script's Ctrl-C)."""
    script = (
        "import signal; from testbed.launcher import keep_ctrl_c; keep_ctrl_c(); "
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    )
    ignored = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert ignored.stdout == "True\n", ignored.stderr
    assert child(script).stdout == "False\n"  # by default: the program's own handler
