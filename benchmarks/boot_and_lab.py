"""Benchmarks of the ground floor: guest boot to ready, lab up and down.

    python benchmarks/boot_and_lab.py [--runs 5] [--json FILE]

Runs the real command line N times each and prints the median (and min/max).  Boot time
is what `testbed boot` reports: QEMU start to the guest's ready marker.  Lab times are the
wall time of `testbed up` on a lab that is down, and of `testbed down`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from medians import report, summary

LAB = "tbbench"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"testbed {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    for arch in ("armv7", "armv8"):
        boots = [
            json.loads(cli("boot", "--arch", arch, "--json").stdout)["boot_seconds"]
            for _ in range(args.runs)
        ]
        results[f"boot_{arch}_seconds"] = summary(boots)
    cli("down", "--lab", LAB)
    ups, downs = [], []
    for _ in range(args.runs):
        started = time.monotonic()
        cli("up", "--lab", LAB)
        ups.append(time.monotonic() - started)
        started = time.monotonic()
        cli("down", "--lab", LAB)
        downs.append(time.monotonic() - started)
    results["lab_up_seconds"] = summary(ups)
    results["lab_down_seconds"] = summary(downs)
    report(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
