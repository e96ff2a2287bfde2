"""Which QEMU loses writes to a shared-memory device under TCG?  Runs the shmem scenario
N times for every QEMU suite x workload (x arch) and tabulates the verdicts.

    python benchmarks/shmem_matrix.py [--runs 10] [--suites ...] [--workloads ...]
        [--arches ...] [--json FILE]

Uses its own lab (bench, on 192.168.30.0/24) so it can run beside the seed's lab."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TOPOLOGY = Path(__file__).with_name("lab-192.168.30.toml")


def run_once(suite: str, arch: str, workload: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "testbed",
        "run",
        "shmem",
        "--json",
        "--lab",
        "bench",
        "--topology",
        str(TOPOLOGY),
        "--qemu-suite",
        suite,
        "--arch",
        arch,
        "--workload",
        workload,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if not proc.stdout.strip():
        return {"verdict": "error", "error": proc.stderr.strip().splitlines()[-1:]}
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--suites", nargs="+", default=["bookworm-backports", "bookworm"])
    parser.add_argument("--workloads", nargs="+", default=["remap", "dirty"])
    parser.add_argument("--arches", nargs="+", default=["armv8"])
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    rows = []
    for suite in args.suites:
        for arch in args.arches:
            for workload in args.workloads:
                runs = [run_once(suite, arch, workload) for _ in range(args.runs)]
                ok = [r for r in runs if r["verdict"] != "error"]
                row = {
                    "suite": suite,
                    "arch": arch,
                    "workload": workload,
                    "qemu": next((r["qemu_version"] for r in ok), "?"),
                    "runs": len(runs),
                    "pass": sum(r["verdict"] == "pass" for r in runs),
                    "fail": sum(r["verdict"] == "fail" for r in runs),
                    "error": len(runs) - len(ok),
                    "qemu_aborted": sum(
                        any(f.startswith("QEMU exited") for f in r["failures"]) for r in ok
                    ),
                    "runs_with_inexact_checkpoints": sum(
                        r["checkpoints"]["inexact"] > 0 for r in ok
                    ),
                    "inexact_checkpoints": sum(r["checkpoints"]["inexact"] for r in ok),
                    "checkpoints": sum(r["checkpoints"]["count"] for r in ok),
                    "final_identical": sum(bool(r["final"]["identical"]) for r in ok),
                    "wall_seconds": [r.get("wall_seconds") for r in ok],
                    "stop_to_exit_seconds": [r.get("stop_to_exit_seconds") for r in ok],
                    "replication_mbps": [r.get("replication_mbps") for r in ok],
                    "failures": [r["failures"][:2] for r in ok if r["failures"]][:3],
                    "errors": [r["error"] for r in runs if r["verdict"] == "error"],
                }
                rows.append(row)
                print(
                    f"{suite:<19} {arch} {workload:<5} QEMU {row['qemu']}: {row['pass']}/"
                    f"{row['runs']} pass; runs with lost writes "
                    f"{row['runs_with_inexact_checkpoints']} (inexact checkpoints "
                    f"{row['inexact_checkpoints']}/{row['checkpoints']}), QEMU aborted "
                    f"{row['qemu_aborted']}, final identical {row['final_identical']}, "
                    f"errors {row['error']}",
                    flush=True,
                )
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
