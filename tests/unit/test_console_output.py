"""What a command typed on the guest's serial console printed (testbed.node.serial's
command_output): the typed line's echo and background programs' lines left out, even
when a background program prints into the middle of the echo."""

from __future__ import annotations

import pytest

from testbed.node.serial import command_output

TOKEN = "TB2x36208"
TYPED = f"uname -m; echo {TOKEN}=$?={TOKEN}"
STATUS = "dirtyram: bursts=120 written=61440 checked=8192 stale=0 passes=3"


@pytest.mark.parametrize(
    ("text", "output"),
    [
        # the plain case: the echo, then the output
        (f"{TYPED}\r\naarch64\r\n", "aarch64"),
        # a background line before the echo and one between the output's lines
        (f"{STATUS}\r\n{TYPED}\r\nline 1\r\n{STATUS}\r\nline 2\r\n", "line 1\nline 2"),
        # a background line printed into the middle of the echo (seen in the suite:
        # the output began with '?=TB2x36208')
        (
            f"uname -m; echo {TOKEN}=${STATUS}\r\n?={TOKEN}\r\naarch64\r\n",
            "aarch64",
        ),
        # ... or right after the echo's last token, before its end of line
        (f"{TYPED}{STATUS}\r\n\r\naarch64\r\n", "aarch64"),
        # a command that prints nothing
        (f"{TYPED}\r\n", ""),
    ],
    ids=["plain", "background-lines", "into-the-echo", "after-the-echo", "no-output"],
)
def test_command_output(text: str, output: str) -> None:
    assert command_output(text, TOKEN) == output
