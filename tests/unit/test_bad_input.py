"""Bad input, every verb: one line naming the problem and the fix, exit 2, nothing created.

Each input runs the real command line (the program's main(), in-process) with DOCKER_HOST
pointing nowhere: nothing can be created, and an input that reaches the engine before it is checked
shows up as "Docker is not running" instead of its own message (a validation-order bug).

Our own errors are ``error: PROBLEM: FIX``; argparse's usage errors end with
``(see testbed ... --help)``.  The paths a case names live in its own directory, which must
be the same afterwards.  The subprocesses run in parallel, once per session (each is a
Python start-up, about a second); each case is still its own test."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.conftest import ROOT, run_cli

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
TOPOLOGIES = ROOT / "tests" / "fixtures" / "topologies"
EXPECTED: dict[str, str] = json.loads((TOPOLOGIES / "expected.json").read_text())

LAB_FIX = "use up to 21 lower-case letters, digits and dashes, starting with a letter"
RATE_FIX = "use a number with kbit, mbit or gbit, e.g. 1gbit"
ADDRESS_FIX = "give a node name, guest, or a.b.c.d"
UNICAST_FIX = "give a node name, guest, or the address of one host"
WRITABLE_FIX = "give a writable path"
TOPOLOGY_FIX = "fix the topology file"
SHM_FIX = "use e.g. 1M (the seed's) or 256K"
BOARDS_FIX = "give two different boards, e.g. gauss-a gauss-b"
TIMEOUT_FIX = "use more than 0 seconds"
MATRIX = "matrix run --results {tmp}/r.jsonl"  # the repository gets no matrix/results.jsonl


@dataclass(frozen=True)
class Case:
    """``command`` (shell words) may name ``{tmp}``, the case's own directory (holding a
    regular file ``plain-file``), and ``{T}``, the topology fixtures.  ``fix`` is None for
    argparse's usage errors."""

    command: str
    problem: str
    fix: str | None = None

    def args(self, tmp: Path) -> list[str]:
        return [
            word.replace("{tmp}", str(tmp)).replace("{T}", str(TOPOLOGIES))
            for word in shlex.split(self.command)
        ]


CASES = [
    # images build | list
    Case("images build --platform linux/riscv64", "invalid choice: 'linux/riscv64'"),
    Case("images build --only kernel", "argument --only: invalid choice: 'kernel'"),
    Case("images list --bogus", "unrecognized arguments: --bogus"),
    # boot
    Case("boot --platform linux/s390x", "argument --platform: invalid choice: 'linux/s390x'"),
    Case("boot --mem abc", "argument --mem: invalid int value: 'abc'"),
    Case(
        "boot --arch armv7 --mem 4096", "--mem 4096 is out of range for armv7", "use 64 to 3072 MB"
    ),
    Case("boot --arch armv8 --mem 32", "--mem 32 is out of range for armv8", "use 64 to 16384 MB"),
    Case("boot --smp 9", "--smp 9 is out of range", "use 1 to 8"),
    # up | down | status | routes
    Case("up --lab BAD_NAME", "bad lab name 'BAD_NAME'", LAB_FIX),
    Case("up --lab 9lab", "bad lab name '9lab'", LAB_FIX),
    Case("up --lab tbbad --bandwidth fast", "--bandwidth: bad rate 'fast'", RATE_FIX),
    Case("up --lab tbbad --bandwidth 0mbit", "--bandwidth: bad rate '0mbit'", RATE_FIX),
    Case("up --lab tbbad --topology ''", "--topology is empty", "give a topology TOML file"),
    Case("down --lab Gauss", "bad lab name 'Gauss'", LAB_FIX),
    Case("status --lab 'gauss lab'", "bad lab name 'gauss lab'", LAB_FIX),
    Case(f"routes --lab {'a' * 22}", f"bad lab name '{'a' * 22}'", LAB_FIX),
    # trace | ping: an address is checked on the host, not by a node of the lab
    Case("trace nfs 999.1.1.1", "destination '999.1.1.1' is not an IPv4 address", ADDRESS_FIX),
    Case("trace nfs 1.2.3", "destination '1.2.3' is not an IPv4 address", ADDRESS_FIX),
    Case("trace gauss-a 0.0.0.0", "destination 0.0.0.0 is not a unicast address", UNICAST_FIX),
    Case("ping nfs 300.1.1.1", "destination '300.1.1.1' is not an IPv4 address", ADDRESS_FIX),
    Case("ping nfs 192.168.2.100/24", "'192.168.2.100/24' is not an IPv4 address", ADDRESS_FIX),
    Case("ping gauss-a 224.0.0.1", "destination 224.0.0.1 is not a unicast address", UNICAST_FIX),
    Case("ping nfs guest --count 0", "--count 0 is out of range", "use 1 or more echo requests"),
    Case("ping nfs guest --count x", "argument --count: invalid int value: 'x'"),
    # exec | shell | switch-route | graph
    Case("exec gauss-a", "no command given", "use testbed exec NODE -- COMMAND [ARGS...]"),
    Case("exec gauss-b --", "no command given", "use testbed exec NODE -- COMMAND [ARGS...]"),
    Case("shell --lab BAD_NAME gauss-a", "bad lab name 'BAD_NAME'", LAB_FIX),
    Case("shell", "the following arguments are required: node"),
    Case("switch-route", "the following arguments are required: --via"),
    Case("switch-route --lab 9lab --via gauss-b", "bad lab name '9lab'", LAB_FIX),
    Case("graph --lab BAD_NAME", "bad lab name 'BAD_NAME'", LAB_FIX),
    Case(
        "graph --topology {tmp}/missing.toml",
        "missing.toml: cannot read it (No such file or directory)",
        TOPOLOGY_FIX,
    ),
    Case("graph --format svg", "argument --format: invalid choice: 'svg'"),
    # run migration
    Case(
        "run migration --load hot:abc",
        "--load hot:abc: 'abc' is not a page count",
        "use e.g. hot:256",
    ),
    Case("run migration --load nope", "--load nope: 'nope' is not a load", "use one of seed, hot"),
    Case(
        "run migration --load seed:1:2",
        "--load seed:1:2: the burst must be 1 to 1 pages",
        "use e.g. seed:16384:512:50",
    ),
    Case(
        "run migration --load hot:256@5",
        "--load hot:256@5: the guest has no CPU 5 (-smp 1)",
        "use @0 to @0, or a larger --smp",
    ),
    Case(
        "run migration --inject nope",
        "--inject nope: unknown fault 'nope'",
        "use one of corrupt-page",
    ),
    Case(
        "run migration --inject corrupt-page=abc",
        "corrupt-page needs a number",
        "e.g. corrupt-page=30",
    ),
    Case(
        "run migration --inject split-brain=1",
        "split-brain takes no value",
        "use --inject split-brain",
    ),
    Case("run migration --hold -1", "--hold -1 is out of range", "use 0 to 600 seconds"),
    Case("run migration --hold nan", "--hold nan is out of range", "use 0 to 600 seconds"),
    Case("run migration --bandwidth fast", "--bandwidth: bad rate 'fast'", RATE_FIX),
    Case(
        "run migration --report /proc/nope",
        "--report /proc/nope: cannot create it in /proc",
        WRITABLE_FIX,
    ),
    Case(
        "run migration --report {tmp}/plain-file/report",
        "/plain-file/report: ",  # then: .../plain-file is not a directory
        "give another path",
    ),
    Case("run migration --lab BAD_NAME", "bad lab name 'BAD_NAME'", LAB_FIX),
    Case(
        "run migration --topology {T}/not-utf8.toml", "not-utf8.toml: not UTF-8 text", TOPOLOGY_FIX
    ),
    Case(
        "run migration --topology {T}/via-no-node.toml",
        "gateway 192.168.10.50 is no node of the lab",
        TOPOLOGY_FIX,
    ),
    Case(
        "run migration --arch armv8 --mem 99999", "--mem 99999 is out of range for armv8", "use 64"
    ),
    Case("run migration --smp 0", "--smp 0 is out of range", "use 1 to 8"),
    Case("run migration --round-trips -1", "--round-trips -1 is out of range", "use 0 or more"),
    Case("run migration --retries -2", "--retries -2 is out of range", "use 0 or more"),
    Case("run migration --stall-timeout 0", "--stall-timeout 0 is out of range", TIMEOUT_FIX),
    Case(
        "run migration --corrupt-page 999999",
        "--corrupt-page 999999 is outside the guest's RAM",
        "use 0 to 131071",
    ),
    Case("run migration --arch armv9", "argument --arch: invalid choice: 'armv9'"),
    # run shmem
    Case("run shmem --shm-size 3K", "--shm-size '3K' is not a size from 4K to 64M", SHM_FIX),
    Case("run shmem --shm-size 1G", "--shm-size '1G' is not a size", SHM_FIX),
    Case("run shmem --duration 0", "--duration 0 is out of range", "use 1 to 3600 s"),
    Case("run shmem --drop-every 0", "--drop-every 0 is out of range", "use 1 or more"),
    Case("run shmem --inject nope", "--inject nope: unknown fault for shmem", "use tamper-region"),
    Case(
        "run shmem --report /proc/nope",
        "--report /proc/nope: cannot create it in /proc",
        WRITABLE_FIX,
    ),
    Case("run shmem --topology {T}/syntax.toml", "syntax.toml: not valid TOML", TOPOLOGY_FIX),
    Case("run shmem --workload fast", "argument --workload: invalid choice: 'fast'"),
    # run all
    Case(
        "run all --report /proc/nope",
        "--report /proc/nope: cannot create it in /proc",
        WRITABLE_FIX,
    ),
    Case("run all --lab 9lab", "bad lab name '9lab'", LAB_FIX),
    Case("run all --duration -1", "--duration -1 is out of range", "use 1 to 3600 s"),
    Case("run all --shm-size abc", "--shm-size 'abc' is not a size", SHM_FIX),
    # console | monitor
    Case("console --lab BAD_NAME gauss-a", "bad lab name 'BAD_NAME'", LAB_FIX),
    Case("monitor --lab 9lab gauss-b", "bad lab name '9lab'", LAB_FIX),
    Case("console", "the following arguments are required: node"),
    # guest start | stop | list | run
    Case(
        "guest start gauss-a --mem 4096",
        "--mem 4096 is out of range for armv7",
        "use 64 to 3072 MB",
    ),
    Case("guest start gauss-a --shm 3K", "--shm '3K' is not a size", SHM_FIX),
    Case("guest start --lab BAD_NAME gauss-a", "bad lab name 'BAD_NAME'", LAB_FIX),
    Case("guest stop gauss-a --timeout 0", "--timeout 0 is out of range", TIMEOUT_FIX),
    Case("guest list --lab 9lab", "bad lab name '9lab'", LAB_FIX),
    Case("guest run gauss-a", "no command given", "use testbed guest run NODE -- COMMAND"),
    Case("guest run gauss-a --timeout -1 -- uname -m", "--timeout -1 is out of range", TIMEOUT_FIX),
    # migrate | compare
    Case("migrate gauss-a gauss-a", "SRC and DST are both gauss-a", BOARDS_FIX),
    Case(
        "migrate gauss-a gauss-b --bandwidth infmbit", "--bandwidth: bad rate 'infmbit'", RATE_FIX
    ),
    Case("migrate --lab BAD_NAME gauss-a gauss-b", "bad lab name 'BAD_NAME'", LAB_FIX),
    Case("compare gauss-b gauss-b", "SRC and DST are both gauss-b", BOARDS_FIX),
    Case("compare --lab 9lab gauss-a gauss-b", "bad lab name '9lab'", LAB_FIX),
    # matrix run | report
    Case(f"{MATRIX} --shard 6/5", "--shard 6/5: index must be 1 to 5", "use I/N with 1 <= I <= N"),
    Case(f"{MATRIX} --runs 0", "--runs 0 is out of range", "use 1 or more"),
    Case(
        f"{MATRIX} --scenario shmem --smp 2",
        "--smp 2: the shmem scenario runs its guest with one CPU",
        "leave --smp out for shmem",
    ),
    Case(f"{MATRIX} --smp 0", "--smp 0 is out of range", "use 1 to 8"),
    Case(f"{MATRIX} --suite sid", "--suite sid: unknown QEMU suite", "use one of bookworm"),
    Case(f"{MATRIX} --hold 601", "--hold 601 is out of range", "use 0 (no hold) to 600 seconds"),
    Case(f"{MATRIX} --lab BAD_NAME", "bad lab name 'BAD_NAME'", LAB_FIX),
    Case(
        f"{MATRIX} --report /proc/nope",
        "--report /proc/nope: cannot create it in /proc",
        WRITABLE_FIX,
    ),
    Case(
        "matrix run --results /proc/nope/r.jsonl",
        "--results /proc/nope/r.jsonl: cannot create it in /proc",
        WRITABLE_FIX,
    ),
    Case(
        "matrix report --out {tmp}/report {tmp}/missing.jsonl",
        "missing.jsonl: no such results file",
        "give files that `matrix run` wrote",
    ),
    Case(
        "matrix report --out /proc/nope {tmp}/plain-file",
        "--out /proc/nope: cannot create it in /proc",
        WRITABLE_FIX,
    ),
    Case("matrix report", "the following arguments are required: FILE"),
]

# `testbed up --topology FILE`: a missing file, a directory, and every malformed fixture
TOPOLOGY_CASES = [
    Case(
        "up --topology {tmp}/missing.toml --lab tbbad",
        "missing.toml: cannot read it (No such file or directory)",
        TOPOLOGY_FIX,
    ),
    Case("up --topology {tmp} --lab tbbad", "cannot read it (Is a directory)", TOPOLOGY_FIX),
    *(
        Case(f"up --topology {{T}}/{name} --lab tbbad", f"{name}: {message}", TOPOLOGY_FIX)
        for name, message in sorted(EXPECTED.items())
    ),
]

VERBS = [
    "images build",
    "images list",
    "boot",
    "up",
    "down",
    "status",
    "routes",
    "trace",
    "ping",
    "exec",
    "shell",
    "switch-route",
    "graph",
    "run migration",
    "run shmem",
    "run all",
    "console",
    "monitor",
    "guest start",
    "guest stop",
    "guest list",
    "guest run",
    "migrate",
    "compare",
    "matrix run",
    "matrix report",
]


@dataclass(frozen=True)
class Answer:
    proc: CompletedProcess[str]
    before: list[str]
    after: list[str]


def _tree(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


def run_main(*args: str, env: dict[str, str]) -> CompletedProcess[str]:
    """The command line's own main(), in this process (the same code path as the
    ``testbed`` program; a process start per case would cost a second of CPU each)."""
    import contextlib
    import io
    import signal
    from unittest import mock

    from testbed.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = signal.getsignal(signal.SIGTERM)
    with (
        mock.patch.dict(os.environ, env),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        finally:
            signal.signal(signal.SIGTERM, previous)
    return CompletedProcess(["testbed", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Answer]:
    """Every case run once, in parallel, each in its own directory."""
    had_matrix = (ROOT / "matrix").exists()
    places: dict[str, Path] = {}
    for case in CASES + TOPOLOGY_CASES:
        places[case.command] = place = tmp_path_factory.mktemp("case")
        (place / "plain-file").write_text("not a directory\n")

    def one(case: Case) -> Answer:
        place = places[case.command]
        before = _tree(place)
        proc = run_main(*case.args(place), env=NO_DOCKER)
        return Answer(proc, before, _tree(place))

    found = {case.command: one(case) for case in CASES + TOPOLOGY_CASES}
    assert (ROOT / "matrix").exists() == had_matrix, "a matrix verb created matrix/"
    assert not list(ROOT.glob(".testbed-probe-*")), "a writability probe was left behind"
    return found


def check(case: Case, answer: Answer) -> None:
    proc = answer.proc
    assert "Docker is not running" not in proc.stderr, f"checked after Docker: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert case.problem in line, line
    if case.fix is None:  # argparse: the problem, then where the help is
        assert re.fullmatch(r"testbed[a-z -]*: error: .+ \(see testbed[a-z -]* --help\)", line)
    else:  # ours: error: PROBLEM: FIX
        assert line.startswith("error: "), line
        assert line.index(case.problem) < line.rindex(f": {case.fix}"), line
    assert answer.after == answer.before, "something was created"


def test_at_least_45_distinct_bad_inputs_across_every_verb() -> None:
    assert len({case.command for case in CASES}) == len(CASES) >= 45
    ours = [case for case in CASES if case.fix is not None]
    assert len(ours) > 3 * (len(CASES) - len(ours)), "usage errors are to be the minority"
    for verb in VERBS:
        assert any(f"{case.command} ".startswith(f"{verb} ") for case in CASES), verb


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.command)
def test_bad_input_is_one_line_exit_2_and_nothing_created(
    case: Case, answers: dict[str, Answer]
) -> None:
    check(case, answers[case.command])


@pytest.mark.parametrize("case", TOPOLOGY_CASES, ids=lambda case: case.command)
def test_bad_topology_file_is_one_line(case: Case, answers: dict[str, Answer]) -> None:
    check(case, answers[case.command])


# root reads a file of mode 000: as root, the command runs without the capabilities that
# let it (util-linux's setpriv drops them from the bounding set before the exec)
WITHOUT_DAC_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_unreadable_topology_file_is_one_line(tmp_path: Path) -> None:
    topology = tmp_path / "secret.toml"
    topology.write_text((TOPOLOGIES / "suite.toml").read_text())
    topology.chmod(0)
    case = Case(
        f"up --topology {topology} --lab tbbad",
        "secret.toml: cannot read it (Permission denied)",
        TOPOLOGY_FIX,
    )
    before = _tree(tmp_path)
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root reads a file of mode 000, and setpriv (util-linux) is missing")
        proc = subprocess.run(
            [*WITHOUT_DAC_OVERRIDE, sys.executable, "-m", "testbed", *case.args(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **NO_DOCKER},
            cwd=ROOT,
        )
    else:
        proc = run_cli(*case.args(tmp_path), env=NO_DOCKER)
    check(case, Answer(proc, before, _tree(tmp_path)))
