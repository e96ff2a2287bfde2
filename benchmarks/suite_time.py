"""Benchmark of the test suite itself: wall time and the machine's CPU time per run.

    python benchmarks/suite_time.py [--runs 1] [--json FILE] [-- PYTEST ARGS...]

Each run is ``python -m pytest`` with the arguments after ``--`` (none: the README's test
command; ``-- -n 0`` runs it without workers).  Besides the wall time it reads /proc/stat
before and after, so the CPU figure counts every process on the machine: pytest, dockerd
and every QEMU in every container.
The CPU seconds divided by the number of cores is the shortest wall time any schedule of
the same work could reach on this machine (``floor``); it says whether a target for the
suite's time can be met by running tests side by side, or only by doing less work.  Where
the engine's containers share one cgroup v1 parent (``cgroupfs`` driver), their share of
the CPU time (every QEMU and node agent) is reported too; the rest is the host's: pytest,
the ``testbed`` commands it runs, dockerd and containerd."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from medians import report, summary

REPO = Path(__file__).resolve().parent.parent
# the busy columns of /proc/stat's "cpu" line: user nice system (idle iowait) irq softirq steal
BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)
# the last run's output (pytest's, whole)
LOG = REPO / "build" / "benchmarks" / "suite_time.log"
# cumulative CPU nanoseconds of every container, removed ones included (cgroup v1)
CONTAINERS_CPUACCT = Path("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage")


def busy_seconds() -> float:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    ticks = sum(int(fields[i]) for i in BUSY_COLUMNS)
    return ticks / os.sysconf("SC_CLK_TCK")


def containers_seconds() -> float | None:
    if not CONTAINERS_CPUACCT.exists():
        return None
    return int(CONTAINERS_CPUACCT.read_text()) / 1e9


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    containers_cpu: float | None
    status: int


def one_run(pytest_args: list[str]) -> Run:
    """Wall seconds, busy CPU seconds (all, and the containers') and exit status."""
    cpu0, wall0, in0 = busy_seconds(), time.monotonic(), containers_seconds()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *pytest_args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall, cpu, in1 = time.monotonic() - wall0, busy_seconds() - cpu0, containers_seconds()
    inside = None if in0 is None or in1 is None else in1 - in0
    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text(done.stdout + done.stderr)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    share = "" if inside is None else f" ({inside:.0f} in containers)"
    print(
        f"  exit {done.returncode}, {wall:.0f} s wall, {cpu:.0f} CPU s{share}: {last}", flush=True
    )
    return Run(wall, cpu, inside, done.returncode)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    runs: list[Run] = []
    for n in range(args.runs):
        print(f"run {n + 1} of {args.runs}: python -m pytest {' '.join(args.pytest_args)}")
        run = one_run(args.pytest_args)
        if run.status != 0:
            print(
                f"run {n + 1} failed (exit {run.status}): no figure is kept; its output: {LOG}",
                file=sys.stderr,
            )
            return 1
        runs.append(run)
    results = {
        "wall_s": summary([r.wall for r in runs]),
        "cpu_s": summary([r.cpu for r in runs]),
        f"floor_s ({cores} cores)": summary([r.cpu / cores for r in runs]),
        "cpu_utilisation": summary([r.cpu / (r.wall * cores) for r in runs]),
    }
    inside = [r.containers_cpu for r in runs if r.containers_cpu is not None]
    if len(inside) == len(runs):
        results["containers_cpu_s"] = summary(inside)
        results["host_cpu_s"] = summary([r.cpu - c for r, c in zip(runs, inside, strict=True)])
    report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
