"""How often does a QEMU lose dirty pages in live migration?  Runs the migration scenario
N times for every QEMU suite x arch x -smp combination and tabulates the verdicts.

    python benchmarks/migration_matrix.py [--runs 10] [--smp 1 2] [--suites ...]
        [--arches ...] [--json FILE] [-- EXTRA testbed run migration ARGS]

Uses its own lab (bench, on 192.168.30.0/24) so it can run beside the seed's lab."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TOPOLOGY = Path(__file__).with_name("lab-192.168.30.toml")


def run_once(suite: str, arch: str, smp: int, extra: list[str]) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "testbed",
        "run",
        "migration",
        "--json",
        "--lab",
        "bench",
        "--topology",
        str(TOPOLOGY),
        "--qemu-suite",
        suite,
        "--arch",
        arch,
        "--smp",
        str(smp),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if not proc.stdout.strip():
        return {"verdict": "error", "error": proc.stderr.strip().splitlines()[-1:]}
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--smp", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--suites", nargs="+", default=["bookworm-backports", "bookworm"])
    parser.add_argument("--arches", nargs="+", default=["armv7", "armv8"])
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("extra", nargs="*", help="more `testbed run migration` arguments")
    args = parser.parse_args()
    rows = []
    for suite in args.suites:
        for arch in args.arches:
            for smp in args.smp:
                runs = [run_once(suite, arch, smp, args.extra) for _ in range(args.runs)]
                lost = [r["memory"]["pages_differing"] for r in runs if "memory" in r]
                stale = [
                    r["migrations"][0]["dirtyram"].get("stale", 0)
                    for r in runs
                    if r.get("migrations")
                ]
                row = {
                    "suite": suite,
                    "arch": arch,
                    "smp": smp,
                    "qemu": next((r["qemu_version"] for r in runs if "qemu_version" in r), "?"),
                    "runs": len(runs),
                    "pass": sum(r["verdict"] == "pass" for r in runs),
                    "fail": sum(r["verdict"] == "fail" for r in runs),
                    "error": sum(r["verdict"] == "error" for r in runs),
                    "runs_with_differing_pages": sum(1 for n in lost if n),
                    "max_differing_pages": max(lost, default=0),
                    "runs_with_stale": sum(1 for n in stale if n),
                    "max_stale": max(stale, default=0),
                    "wall_seconds": [r.get("wall_seconds") for r in runs],
                    "downtime_ms": [
                        r["migration"].get("downtime_ms") for r in runs if r.get("migration")
                    ],
                    "errors": [r["error"] for r in runs if r["verdict"] == "error"],
                }
                rows.append(row)
                print(
                    f"{suite:<19} {arch} smp={smp} QEMU {row['qemu']}: {row['pass']}/"
                    f"{row['runs']} pass, differing pages in {row['runs_with_differing_pages']}"
                    f" (max {row['max_differing_pages']}), stale in {row['runs_with_stale']} "
                    f"(max {row['max_stale']}), errors {row['error']}",
                    flush=True,
                )
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
