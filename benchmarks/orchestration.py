"""The orchestration's own cost, before and after a change, in one run.

    python benchmarks/orchestration.py [--runs 3] [--round-trips 25] [--baseline REF]
                                       [--skip round-trips,run-all,outage] [--json FILE]

Measures, as medians of --runs runs each, with the real command line on a lab of its own
(benchmarks/lab-192.168.30.toml, so that a user's lab is not touched):

* ``per_migration_s``: wall time of ``testbed run migration --arch armv7 --smp 2
  --round-trips K`` divided by its 2K verified migrations (each one: destination start,
  migration, both RAMs compared page by page, resume, route switch, loads' passes);
* ``qemu_migration_ms``: the median of QEMU's own total-time over those migrations;
* ``run_all_s``: wall time of ``testbed run all`` (images warm);
* ``outage_minus_switch_ms``: per migration, network.outage_ms (destination resumed ->
  the guest's first echo reply at the NFS server) minus the time from the route switch
  to that reply: what the procedure adds to the outage.

With ``--baseline REF`` the same figures are measured for the code at git REF: a work
tree of REF gets its own virtualenv and its own images (prefix ``gauss-baseline``), and
the two columns are printed side by side.  The baseline's JSON field names are read as
that code wrote them."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = str(ROOT / "benchmarks" / "lab-192.168.30.toml")
LAB = "tbbench"


@dataclass
class Code:
    """One version of the testbed: its python, its source tree, its image prefix."""

    name: str
    python: str
    tree: Path
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-m", "testbed", *args],
            capture_output=True,
            text=True,
            cwd=self.tree,
            env={**os.environ, **self.env},
            timeout=timeout,
        )


def baseline(ref: str, work: Path) -> Code:
    tree = work / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
        check=True,
        capture_output=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    python = str(work / "venv" / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "-e", str(tree)], check=True, capture_output=True
    )
    code = Code(f"before ({ref[:10]})", python, tree, {"TESTBED_IMAGE_PREFIX": "gauss-baseline"})
    print(f"building the baseline images from {ref} ...", flush=True)
    built = code.cli("images", "build")
    if built.returncode != 0:
        raise SystemExit(f"baseline images: {built.stderr[-500:]}")
    return code


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def hops(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result.get("migrations", []))


def run_json(code: Code, *args: str) -> tuple[float, dict[str, Any]]:
    code.cli("down", "--lab", LAB)
    started = time.monotonic()
    proc = code.cli(*args, "--lab", LAB, "--topology", TOPOLOGY, "--json")
    wall = time.monotonic() - started
    code.cli("down", "--lab", LAB)
    if not proc.stdout.strip():
        raise SystemExit(f"{code.name}: testbed {' '.join(args)}: {proc.stderr[-800:]}")
    return wall, json.loads(proc.stdout)


def measure(code: Code, runs: int, round_trips: int, skip: set[str]) -> dict[str, Any]:
    out: dict[str, list[float]] = {
        "per_migration_s": [],
        "qemu_migration_ms": [],
        "run_all_s": [],
        "outage_minus_switch_ms": [],
        "outage_ms": [],
        "switch_to_reply_ms": [],
    }
    verdicts: list[str] = []
    for run in range(runs):
        if "round-trips" not in skip:
            wall, result = run_json(
                code,
                "run",
                "migration",
                "--arch",
                "armv7",
                "--smp",
                "2",
                "--round-trips",
                str(round_trips),
            )
            verdicts.append(str(result["verdict"]))
            migrations = hops(result)
            out["per_migration_s"].append(wall / max(1, len(migrations)))
            totals = [m["migration"]["total_ms"] for m in migrations if m.get("migration")]
            out["qemu_migration_ms"] += [float(t) for t in totals if t]
            for m in migrations:
                net = m.get("network") or {}
                outage, reply = net.get("outage_ms"), net.get("switch_to_reply_ms")
                if outage is not None and reply is not None:
                    out["outage_ms"].append(float(outage))
                    out["switch_to_reply_ms"].append(float(reply))
                    out["outage_minus_switch_ms"].append(float(outage) - float(reply))
            print(
                f"  {code.name}: round trips run {run + 1}: {wall:.0f} s for "
                f"{len(migrations)} migrations, {result['verdict']}",
                flush=True,
            )
        if "run-all" not in skip:
            wall, result = run_json(code, "run", "all")
            verdicts.append(str(result["verdict"]))
            out["run_all_s"].append(wall)
            print(
                f"  {code.name}: run all {run + 1}: {wall:.0f} s, {result['verdict']}", flush=True
            )
    return {**{k: median(v) for k, v in out.items()}, "samples": out, "verdicts": verdicts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=25)
    parser.add_argument("--baseline", metavar="REF", help="also measure the code at git REF")
    parser.add_argument("--skip", default="", help="comma list: round-trips, run-all")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    codes = [Code("after (this tree)", sys.executable, ROOT)]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="testbed-bench-") as tmp:
        try:
            if args.baseline:
                codes.insert(0, baseline(args.baseline, Path(tmp)))
            for code in codes:
                print(f"measuring {code.name} ...", flush=True)
                results[code.name] = measure(code, args.runs, args.round_trips, skip)
        finally:
            if args.baseline:
                subprocess.run(
                    [
                        "git",
                        "-C",
                        str(ROOT),
                        "worktree",
                        "remove",
                        "--force",
                        str(Path(tmp) / "baseline"),
                    ],
                    capture_output=True,
                )
    names = list(results)
    print(f"\n{'median of ' + str(args.runs) + ' runs':<28}" + "".join(f"{n:>26}" for n in names))
    for key in (
        "per_migration_s",
        "qemu_migration_ms",
        "run_all_s",
        "outage_ms",
        "switch_to_reply_ms",
        "outage_minus_switch_ms",
    ):
        row = [results[n][key] for n in names]
        print(f"{key:<28}" + "".join(f"{'-' if v is None else v:>26}" for v in row))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
