"""Benchmark of the test suite itself: wall time and the machine's CPU time per run.

    python benchmarks/suite_time.py [--runs 1] [--json FILE] [-- PYTEST ARGS...]

Each run is ``python -m pytest`` with the arguments after ``--`` (none: the README's test
command).  Besides the wall time it reads /proc/stat before and after, so the CPU figure
counts every process on the machine: pytest, dockerd and every QEMU in every container.
The CPU seconds divided by the number of cores is the shortest wall time any schedule of
the same work could reach on this machine (``floor``); it says whether a target for the
suite's time can be met by running tests side by side, or only by doing less work."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from medians import report, summary

REPO = Path(__file__).resolve().parent.parent
# the busy columns of /proc/stat's "cpu" line: user nice system (idle iowait) irq softirq steal
BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)
OUTCOME = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")


def busy_seconds() -> float:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    ticks = sum(int(fields[i]) for i in BUSY_COLUMNS)
    return ticks / os.sysconf("SC_CLK_TCK")


def one_run(pytest_args: list[str]) -> tuple[float, float, int, dict[str, int]]:
    """Wall seconds, busy CPU seconds, exit status and the outcome counts of one run."""
    cpu0, wall0 = busy_seconds(), time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *pytest_args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall, cpu = time.monotonic() - wall0, busy_seconds() - cpu0
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {kind.rstrip("s"): int(n) for n, kind in OUTCOME.findall(last)}
    print(f"  exit {done.returncode}, {wall:.0f} s wall, {cpu:.0f} CPU s: {last}", flush=True)
    return wall, cpu, done.returncode, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    walls: list[float] = []
    cpus: list[float] = []
    for n in range(args.runs):
        print(f"run {n + 1} of {args.runs}: python -m pytest {' '.join(args.pytest_args)}")
        wall, cpu, status, _ = one_run(args.pytest_args)
        if status != 0:
            print(f"run {n + 1} failed (exit {status}): no figure is kept", file=sys.stderr)
            return 1
        walls.append(wall)
        cpus.append(cpu)
    report(
        {
            "wall_s": summary(walls),
            "cpu_s": summary(cpus),
            f"floor_s ({cores} cores)": summary([c / cores for c in cpus]),
            "cpu_utilisation": summary([c / (w * cores) for c, w in zip(cpus, walls, strict=True)]),
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
