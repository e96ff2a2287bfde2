"""The migration loads: tbload (images/guest/tbload.c) compiled on the host, each mode's
in-guest stale check (a page altered behind the program's back through /proc/PID/mem, as
a lost dirty page looks after migration), and testbed.loads, which asks for the loads,
types their commands and reads their console lines."""

from __future__ import annotations

import re
import shlex
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from testbed.errors import UserError
from testbed.loads import (
    STAMP_MAGICS,
    LoadLog,
    LoadSpec,
    check_cpus,
    check_fits,
    ensure_unique_idents,
    parse_load,
    parse_load_output,
    pass_seconds,
)
from testbed.scenarios.migration import switchover_passes
from tests.unit.guest_programs import compile_program

PAGE = 4096
COUNTER = 16  # offset of the stamp's counter (burst, iteration, write or sweep number)

# one small instance of every mode, with the ident its lines carry
MODES = {
    "seed": ["seed", "64", "8", "5"],
    "hot": ["hot", "64"],
    "random": ["random", "64", "--seed", "1"],
    "wide": ["wide", "256"],
}


@pytest.fixture(scope="module")
def tbload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_program("tbload", tmp_path_factory.mktemp("tbload"), also_as="dirtyram")


def start(binary: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    """Starts the load; returns it and the address of its region."""
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.search(r" start .*page_size=(\d+) region=(0x[0-9a-f]+)$", first)
    assert match, first
    assert int(match.group(1)) == PAGE
    return proc, int(match.group(2), 16)


def wait_for_passes(proc: subprocess.Popen[str], passes: int) -> tuple[list[str], int]:
    """Reads status lines up to one with at least ``passes``; returns them and its passes."""
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, "the load ended early"
        lines.append(line)
        m = re.search(r" passes=(\d+)", line)
        if m and int(m.group(1)) >= passes:
            return lines, int(m.group(1))


def stop(proc: subprocess.Popen[str]) -> tuple[str, int]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    return out, proc.returncode


def the_log(out: str) -> LoadLog:
    logs = parse_load_output(out)
    assert len(logs) == 1, out
    return next(iter(logs.values()))


def run(binary: Path, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


# --- tbload ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_clean_run_passes(tbload: Path, mode: str) -> None:
    proc, _ = start(tbload, *MODES[mode])
    wait_for_passes(proc, 5)
    out, rc = stop(proc)
    log = the_log(out)
    assert log.ident == mode and log.mode == mode
    assert log.summary and log.summary.result == "PASS" and log.summary.stale == 0, out
    assert log.summary.checked > 0 and log.summary.passes >= 5
    assert rc == 0


@pytest.mark.parametrize("mode", MODES)
def test_altered_page_is_reported_stale(tbload: Path, mode: str) -> None:
    proc, region = start(tbload, *MODES[mode])
    seen, passes = wait_for_passes(proc, 20)  # every page written (random: almost surely)
    victim = 37
    address = region + victim * PAGE + COUNTER
    with open(f"/proc/{proc.pid}/mem", "r+b", buffering=0) as mem:
        # A poke that lands between the program's check of the page and its rewrite is
        # overwritten unseen: poke again until one is seen (the first, nearly always).
        for _ in range(5):
            mem.seek(address)
            counter = struct.unpack("<Q", mem.read(8))[0]
            mem.seek(address)
            mem.write(struct.pack("<Q", counter - 1))  # as if the newest write were lost
            lines, passes = wait_for_passes(proc, passes + 10)
            seen += lines
            if any("stale_pages=" in line for line in lines):
                break
    out, rc = stop(proc)
    log = the_log("".join(seen) + out)
    assert str(victim) in log.stale_pages, out
    assert set(log.stale_pages) == {str(victim)}, out
    assert log.summary and log.summary.result == "FAIL" and log.summary.stale >= 1, out
    assert rc == 1


def test_cpu_pinning(tbload: Path) -> None:
    proc = run(tbload, "hot", "16", "--cpu", "0", "--duration", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert " cpu=0 " in proc.stdout.splitlines()[0]


def test_cpu_that_does_not_exist(tbload: Path) -> None:
    proc = run(tbload, "hot", "16", "--cpu", "9999")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "CPU 9999" in proc.stderr, proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_duration_ends_the_run_with_a_summary(tbload: Path, mode: str) -> None:
    began = time.monotonic()
    proc = run(tbload, *MODES[mode], "--duration", "1")
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    assert 0.9 < took < 5
    last = proc.stdout.splitlines()[-1]
    assert last.startswith(f"tbload[{mode}]: summary mode={mode} ") and "result=PASS" in last


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["cold", "5"],
        ["hot"],
        ["hot", "x"],
        ["hot", "0"],
        ["hot", "5", "6"],
        ["seed", "8", "16", "50"],
        ["seed", "8", "2"],
        ["hot", "5", "--seed", "1"],
        ["wide", "5", "--period-ms"],
        ["hot", "5", "--duration", "0"],
        ["hot", "5", "--id", "a b"],
        ["random", "5", "--period-us", "-1"],
        ["hot", "5", "--cpu", "x"],
    ],
)
def test_usage_errors(tbload: Path, args: list[str]) -> None:
    proc = run(tbload, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "tbload" in proc.stderr, proc.stderr


def test_dirtyram_name_refuses_tbload_options(tbload: Path) -> None:
    proc = run(tbload.with_name("dirtyram"), "64", "8", "5", "--id", "x")
    assert proc.returncode == 2 and proc.stderr.startswith("dirtyram: ")


@pytest.mark.parametrize(
    ("program", "args", "prefix"),
    [
        ("tbload", ["seed", "64", "8", "5", "--id", "s"], "tbload[s]: mode=seed "),
        ("dirtyram", ["64", "8", "5"], "dirtyram: bursts="),
    ],
)
def test_a_line_when_a_pass_completes(
    tbload: Path, program: str, args: list[str], prefix: str
) -> None:
    # a pass takes 8 bursts of 5 ms: about 20 lines in 2 s, where once a second gives 2
    proc = run(tbload.with_name(program), *args, "--duration", "2")
    lines = [line for line in proc.stdout.splitlines() if line.startswith(prefix)]
    passes = [int(re.findall(r"passes=(\d+)", line)[0]) for line in lines]
    assert len(lines) >= 8, proc.stdout
    assert passes == sorted(set(passes)), passes  # every line has a new pass


def test_hot_lines_are_at_most_20_a_second(tbload: Path) -> None:
    proc = run(tbload, "hot", "16", "--duration", "2")
    statuses = [line for line in proc.stdout.splitlines() if "tbload[hot]: mode=" in line]
    assert 10 <= len(statuses) <= 42, len(statuses)


def test_guest_commands_run_and_their_lines_are_keyed_by_ident(tbload: Path) -> None:
    specs = ensure_unique_idents(
        [
            parse_load("seed:64:8:5"),
            parse_load("seed:64:8:5"),
            parse_load("hot:16@0"),
            parse_load("random:64:10:3"),
            parse_load("wide:128:5"),
        ]
    )
    output = ""
    for spec in specs:
        program, *args = shlex.split(spec.guest_command())
        proc = run(tbload.with_name(program), *args, "--duration", "0.3")
        assert proc.returncode == 0, (spec, proc.stderr)
        output += proc.stdout
    logs = parse_load_output(output)
    assert list(logs) == ["dirtyram", "dirtyram-2", "hot", "random", "wide"]
    for spec in specs:
        log = logs[spec.ident]
        assert log.mode == spec.mode and log.starts == 1
        assert log.summary and log.summary.result == "PASS" and log.statuses


def test_stamp_magics_are_the_programs(tbload: Path) -> None:
    source = (Path(__file__).resolve().parents[2] / "images/guest/tbload.c").read_text()
    for mode, magic in STAMP_MAGICS.items():
        assert re.search(rf"#define MAGIC_{mode.upper()} 0x{magic:016x}ULL", source), mode


# --- parse_load -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("seed", LoadSpec("seed", 16384, burst=512, period_ms=50)),
        ("seed:409600:2048:50", LoadSpec("seed", 409600, burst=2048, period_ms=50)),
        ("seed:32768", LoadSpec("seed", 32768, burst=512, period_ms=50)),
        ("hot", LoadSpec("hot", 256)),
        ("hot:256@1", LoadSpec("hot", 256, cpu=1)),
        (" hot:64 ", LoadSpec("hot", 64)),
        ("random:16384", LoadSpec("random", 16384)),
        ("random:100:5:7@0", LoadSpec("random", 100, period_us=5, seed=7, cpu=0)),
        ("wide:65536", LoadSpec("wide", 65536)),
        ("wide", LoadSpec("wide", 65536)),
        ("wide:1024:100", LoadSpec("wide", 1024, period_ms=100)),
    ],
)
def test_parse_load(text: str, spec: LoadSpec) -> None:
    assert parse_load(text) == spec
    assert parse_load(str(spec)) == spec


def test_default_idents() -> None:
    assert parse_load("seed").ident == "dirtyram"
    assert parse_load("hot@1").ident == "hot"
    with pytest.raises(ValueError):
        LoadSpec("hot", 1, ident="a b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hot:abc", "--load hot:abc: 'abc' is not a page count: use e.g. hot:256"),
        ("", "--load : the load has no name: use one of seed, hot, random, wide, e.g. hot:256@1"),
        (
            "cold:5",
            "--load cold:5: 'cold' is not a load: use one of seed, hot, random, wide, "
            "e.g. hot:256@1",
        ),
        ("hot:0", "--load hot:0: a load needs at least one page: use e.g. hot:256"),
        ("hot:-5", "--load hot:-5: '-5' is not a page count: use e.g. hot:256"),
        ("hot:1_000", "--load hot:1_000: '1_000' is not a page count: use e.g. hot:256"),
        ("hot:", "--load hot:: '' is not a page count: use e.g. hot:256"),
        ("hot:256:7", "--load hot:256:7: hot takes at most 1 argument: use hot:PAGES"),
        (
            "wide:1:2:3",
            "--load wide:1:2:3: wide takes at most 2 arguments: use wide:PAGES:PERIOD_MS",
        ),
        ("hot@x", "--load hot@x: 'x' is not a CPU number: use e.g. hot@1"),
        ("hot@", "--load hot@: '' is not a CPU number: use e.g. hot@1"),
        ("hot@1@2", "--load hot@1@2: '1@2' is not a CPU number: use e.g. hot@1"),
        (
            "random:64:fast",
            "--load random:64:fast: 'fast' is not a period in us: use e.g. random:16384:100",
        ),
        ("seed:1::5", "--load seed:1::5: '' is not a burst size: use e.g. seed:16384:512"),
        (
            "seed:64:128:50",
            "--load seed:64:128:50: the burst must be 1 to 64 pages: use e.g. seed:16384:512:50",
        ),
        (
            "seed:64:8:0",
            "--load seed:64:8:0: the seed load needs a period: "
            "use hot for a load that never sleeps",
        ),
    ],
)
def test_parse_load_refuses(text: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        parse_load(text)
    assert str(err.value) == message
    assert "\n" not in str(err.value)


# --- commands, idents, limits ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("seed", "dirtyram 16384 512 50"),
        ("seed:409600:2048:50@1", "dirtyram 409600 2048 50 --cpu 1"),
        ("hot:256@1", "tbload hot 256 --id hot --cpu 1"),
        ("random:16384", "tbload random 16384 --id random"),
        ("random:64:10:3", "tbload random 64 --period-us 10 --seed 3 --id random"),
        ("wide:65536", "tbload wide 65536 --id wide"),
        ("wide:1024:100@0", "tbload wide 1024 --period-ms 100 --id wide --cpu 0"),
    ],
)
def test_guest_command(text: str, command: str) -> None:
    assert parse_load(text).guest_command() == command


def test_ensure_unique_idents() -> None:
    loads = [parse_load(t) for t in ("hot", "hot@1", "seed", "wide", "hot", "seed")]
    idents = [spec.ident for spec in ensure_unique_idents(loads)]
    assert idents == ["hot", "hot-2", "dirtyram", "wide", "hot-3", "dirtyram-2"]
    second_seed = ensure_unique_idents(loads)[-1]
    assert second_seed.guest_command() == "tbload seed 16384 512 50 --id dirtyram-2"
    # an ident already taken is not made twice
    taken = [LoadSpec("hot", 1), LoadSpec("hot", 1, ident="hot-2"), LoadSpec("hot", 1)]
    assert [s.ident for s in ensure_unique_idents(taken)] == ["hot", "hot-2", "hot-3"]


def test_memory_bytes() -> None:
    assert parse_load("hot:256").memory_bytes == 256 * PAGE
    assert parse_load("random:1000").memory_bytes == 1000 * (PAGE + 8)  # with the shadow


def test_check_fits() -> None:
    check_fits([parse_load("seed"), parse_load("wide")], 512)  # 64 + 256 of 435 MiB
    check_fits([parse_load(f"wide:{int(0.85 * 512 * 256)}")], 512)  # exactly 85%
    with pytest.raises(UserError) as err:
        check_fits([parse_load("seed"), parse_load("wide:98304")], 512)
    assert str(err.value) == (
        "--load seed:16384:512:50 wide:98304:0: the loads need 448 MiB, more than 85% of "
        "the guest's 512 MiB: use fewer pages or a larger --mem"
    )


def test_check_cpus() -> None:
    check_cpus([parse_load("hot@1"), parse_load("seed")], 2)
    with pytest.raises(UserError) as err:
        check_cpus([parse_load("seed"), parse_load("hot@2")], 2)
    assert str(err.value) == (
        "--load hot:256@2: the guest has no CPU 2 (-smp 2): use @0 to @1, or a larger --smp"
    )


def test_pass_seconds() -> None:
    assert pass_seconds(parse_load("seed")) == pytest.approx(1.6)  # 32 bursts of 50 ms
    assert pass_seconds(parse_load("seed:409600:2048:50")) == pytest.approx(10.0)
    assert pass_seconds(parse_load("hot")) is None
    assert pass_seconds(parse_load("wide:1024:100")) is None


# --- parse_load_output ----------------------------------------------------------------

CONSOLE = """\
guest# dirtyram 64 8 5 &
guest# tbload hot 256 --id hot --cpu 1 &
dirtyram: start pages=64 burst=8 period_ms=5 stride=8 page_size=4096 region=0xb6d00000
tbload[hot]: start mode=hot pages=256 cpu=1 mlock=yes page_size=4096 region=0xb6c00000\r
[   12.345678] random: crng init done
writeout: 1700000000 2023-11-14 22:13:20
dirtyram: bursts=101 written=808 checked=744 stale=0 passes=12 overruns=0
tbload[hot]: mode=hot written=256000 checked=255744 stale=0 passes=1000 overruns=0\r
tbload[hot]: mode=hot written=512000 checked=511744 sta[   13.000001] virtio_net virtio0: x
le=0 passes=2000 overruns=0
tbload[hot]: mode=hot written=768000 checked=767744 stale=256 passes=3000 overruns=0 \
stale_pages=0,1,2,+253
garbage tbload[hot]: mode=hot written=1
dirtyram: bursts=201 written=1608 checked=1544 stale=2 passes=25 overruns=1 stale_pages=3,7
tbload[hot]: mode=hot written=800000 checked=799744 stale=256 passes=3125 overruns=1
dirtyram: bursts=301 written=2408 checked=2344 stale=3 passes=37 overruns=12[   14.0] x
tbload[wide-2]: mode=wide written=5 checked=0 stale=0 passes=0 overruns=0 result=PASS
writeout: 1700000001 2023-11-14 22:13:21
dirtyram: summary bursts=310 written=2480 checked=2416 stale=3 passes=38 overruns=1 result=FAIL
tbload[hot]: summary mode=hot written=800256 checked=800000 stale=256 passes=3126 overruns=1 \
result=FAIL
"""


def test_parse_load_output() -> None:
    logs = parse_load_output(CONSOLE)
    assert list(logs) == ["dirtyram", "hot"]

    dirtyram = logs["dirtyram"]
    assert dirtyram.mode == "seed" and dirtyram.starts == 1
    assert [s.passes for s in dirtyram.statuses] == [12, 25]  # the cut line is skipped
    assert dirtyram.stale_pages == ["3", "7"]
    assert dirtyram.summary and dirtyram.summary.result == "FAIL"
    assert dirtyram.last == dirtyram.summary and dirtyram.last.stale == 3

    hot = logs["hot"]
    assert hot.mode == "hot"
    assert [s.passes for s in hot.statuses] == [1000, 3000, 3125]  # the split line skipped
    assert hot.statuses[1].stale_pages == ("0", "1", "2", "+253")
    assert hot.stale_pages == ["0", "1", "2", "+253"]
    assert hot.statuses[0].result is None
    assert hot.summary == hot.last
    assert hot.summary is not None and hot.summary.stale == 256 and hot.summary.written == 800256


def test_parse_load_output_without_loads() -> None:
    assert parse_load_output("guest# ls\n[    0.000000] Booting Linux\n") == {}
    log = parse_load_output("tbload[x]: mode=hot written=1 checked=0 stale=0 passes=0 overruns=0")
    assert log["x"].last == log["x"].statuses[0] and log["x"].summary is None


# --- the passes at the switchover: the source's console, and what arrived before the mark ---
def hot_line(passes: int) -> str:
    return f"tbload[hot]: mode=hot written=1 checked=1 stale=0 passes={passes} overruns=0\n"


def dirtyram_line(passes: int) -> str:
    return f"dirtyram: bursts=9 written=1 checked=1 stale=0 passes={passes} overruns=0\n"


def test_a_line_in_flight_at_the_pause_counts_for_the_switchover() -> None:
    # the source's console ends at 10 passes; the line written at 14, still in the guest's
    # tty when it paused, is the destination's first: the wait counts from 14, not 10
    src = hot_line(9) + hot_line(10)
    before_mark = hot_line(14) + "guest# echo testbed-resumed-$((1))\ntestbed-resumed-1"
    assert switchover_passes(src, before_mark) == {"hot": 14}


def test_without_lines_before_the_mark_the_source_tells() -> None:
    src = hot_line(10) + dirtyram_line(3)
    assert switchover_passes(src, "testbed-resumed-1") == {"hot": 10, "dirtyram": 3}
    assert switchover_passes(src, "") == {"hot": 10, "dirtyram": 3}


def test_a_load_seen_only_before_the_mark_and_none_at_all() -> None:
    assert switchover_passes("", dirtyram_line(5)) == {"dirtyram": 5}
    assert switchover_passes("", "") == {}
    # an older line on the destination never lowers the count
    assert switchover_passes(hot_line(20), hot_line(19)) == {"hot": 20}
