"""testbed run migration|all, and the person's way in: console, monitor."""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from testbed.arch import ARCHES
from testbed.cli.output import err, out, print_json, table
from testbed.errors import UserError
from testbed.images import DEFAULT_SUITE, SUITES
from testbed.lab import DEFAULT_LAB
from testbed.node.accel import ACCELS


def _migration(args: argparse.Namespace, arch: str) -> dict[str, Any]:
    from testbed import docker_client
    from testbed.report import write_report
    from testbed.scenarios.migration import MigrationParams, MigrationScenario

    params = MigrationParams(
        arch=arch,
        pages=args.pages,
        burst=args.burst,
        period_ms=args.period,
        mem_mb=args.mem,
        smp=args.smp,
        bandwidth=args.bandwidth,
        round_trips=args.round_trips,
        accel=args.accel,
        suite=args.qemu_suite,
        lab=args.lab,
        topology_file=args.topology,
        retries=args.retries,
        stall_timeout=args.stall_timeout,
        corrupt_page=args.corrupt_page,
    )
    params.validate()
    client = docker_client.connect()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"migration {arch}", total=None, detail="", visible=False)

        def on_step(text: str) -> None:
            progress.console.print(f"  {text}", highlight=False)

        def on_progress(info: dict[str, Any]) -> None:
            progress.update(
                task,
                visible=True,
                completed=info["transferred"],
                total=max(info["total"], info["transferred"]) or None,
                detail=f"{info['status']} {info['mbps']:.0f} Mbit/s, dirty "
                f"{info['dirty_pages_rate']} pages/s",
            )

        scenario = MigrationScenario(client, params, on_step, on_progress)
        result = scenario.run()
    data = result.to_dict()
    if args.report:
        write_report(args.report, f"migration-{arch}", data, result.artifacts)
    return data


def _print_migration(data: dict[str, Any]) -> None:
    rows = []
    for m in data["migrations"]:
        mig, mem, net = m["migration"], m["memory"], m["network"]
        rows.append(
            [
                f"{m['index'] + 1}: {m['source']} -> {m['destination']}",
                str(mig.get("status")),
                f"{mig.get('total_ms')} ms",
                f"{mig.get('downtime_ms')} ms",
                f"{(mig.get('transferred_bytes') or 0) / 2**20:.0f} MiB",
                f"{mig.get('throughput_mbps') or 0:.0f}",
                f"{mem.get('pages_differing', '-')}/{mem.get('pages_compared', '-')}",
                str(m["dirtyram"].get("stale", "-")),
                f"{net.get('outage_ms')} ms",
                "[green]pass[/green]" if m["verdict"] == "pass" else "[red]FAIL[/red]",
            ]
        )
    out.print(
        table(
            f"migration {data['arch']} (QEMU {data['qemu_version']}, {data['accel']})",
            [
                "migration",
                "status",
                "total",
                "downtime",
                "sent",
                "Mbit/s",
                "pages differing",
                "stale",
                "ping outage",
                "verdict",
            ],
            rows,
        )
    )
    disk = "clean" if data["disk"].get("fsck_clean") else "[red]NOT clean[/red]"
    out.print(f"e2fsck -fn: {disk}; dirtyram summary: {data['dirtyram']}", highlight=False)
    for failure in data["failures"]:
        out.print(f"[red]FAIL[/red] {failure}", highlight=False)
    verdict = "[green]PASS[/green]" if data["verdict"] == "pass" else "[red]FAIL[/red]"
    out.print(f"{verdict} in {data['wall_seconds']:.0f} s")


def _shmem(args: argparse.Namespace, arch: str) -> dict[str, Any]:
    from testbed import docker_client
    from testbed.report import write_report
    from testbed.scenarios.shmem import ShmemParams, ShmemScenario

    params = ShmemParams(
        arch=arch,
        shm_size=args.shm_size,
        workload=args.workload,
        duration=args.duration,
        remote=args.remote,
        drop_every=args.drop_every,
        accel=args.accel,
        suite=args.qemu_suite,
        lab=args.lab,
        topology_file=args.topology,
    )
    params.validate()
    client = docker_client.connect()
    with err.status(f"shmem {arch}") as status:

        def on_step(text: str) -> None:
            status.update(text)
            err.print(f"  {text}", highlight=False)

        result = ShmemScenario(client, params, on_step).run()
    data = result.to_dict()
    if args.report:
        write_report(args.report, f"shmem-{arch}", data, result.artifacts)
    return data


def _print_shmem(data: dict[str, Any]) -> None:
    final = data["final"]
    c = data["checkpoints"]
    out.print(
        table(
            f"shmem {data['arch']} (QEMU {data['qemu_version']}, {data['accel']}, "
            f"{data['workload']}{', remote' if data['remote'] else ''})",
            [
                "rounds",
                "pages copied",
                "checkpoints exact/all",
                "final identical",
                "sum -r src",
                "sum -r dest",
                "Mbit/s",
                "stop to exit",
                "verdict",
            ],
            [
                [
                    str(data["rounds"]),
                    str(data["pages_copied"]),
                    f"{c['exact']}/{c['count']}",
                    str(final["identical"]),
                    str(final["sum_r_src"]),
                    str(final["sum_r_dest"]),
                    f"{data['replication_mbps']:.1f}",
                    f"{data['stop_to_exit_seconds']} s",
                    "[green]pass[/green]" if data["verdict"] == "pass" else "[red]FAIL[/red]",
                ]
            ],
        )
    )
    for failure in data["failures"]:
        out.print(f"[red]FAIL[/red] {failure}", highlight=False)


def cmd_shmem(args: argparse.Namespace) -> int:
    data = _shmem(args, args.arch)
    if args.json:
        print_json(data)
    else:
        _print_shmem(data)
    return 0 if data["verdict"] == "pass" else 1


def cmd_migration(args: argparse.Namespace) -> int:
    data = _migration(args, args.arch)
    if args.json:
        print_json(data)
    else:
        _print_migration(data)
    return 0 if data["verdict"] == "pass" else 1


def cmd_all(args: argparse.Namespace) -> int:
    results = []
    for arch in ARCHES:
        err.print(f"[bold]migration {arch}[/bold]")
        results.append(_migration(args, arch))
    for arch in ARCHES:
        err.print(f"[bold]shmem {arch}[/bold]")
        results.append(_shmem(args, arch))
    if args.json:
        print_json(
            {
                "verdict": "pass" if all(r["verdict"] == "pass" for r in results) else "fail",
                "results": results,
            }
        )
    else:
        out.print(
            table(
                "testbed run all",
                ["scenario", "arch", "QEMU", "accel", "verdict", "wall time", "first failure"],
                [
                    [
                        r["scenario"],
                        r["arch"],
                        r["qemu_version"],
                        r["accel"],
                        "[green]pass[/green]" if r["verdict"] == "pass" else "[red]FAIL[/red]",
                        f"{r['wall_seconds']:.0f} s",
                        (r["failures"] or [""])[0][:60],
                    ]
                    for r in results
                ],
            )
        )
    return 0 if all(r["verdict"] == "pass" for r in results) else 1


def _attach(args: argparse.Namespace, socket_name: str, what: str) -> int:
    from testbed import docker_client
    from testbed.lab import Lab

    lab = Lab(docker_client.connect(), args.lab)
    container = lab.container(args.node)
    path = f"/run/testbed/vm/guest/{socket_name}"
    if container.exec_run(["test", "-S", path])[0] != 0:
        raise UserError(f"no guest runs on {args.node}", "start one with `testbed run ...`")
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise UserError(f"the {what} needs the docker command line client", "install it")
    err.print(f"{what} of the guest on {args.node}; leave with Ctrl-] (or Ctrl-C)")
    link = "STDIO,raw,echo=0,escape=0x1d"
    os.execv(
        docker_cli,
        [docker_cli, "exec", "-it", container.name, "socat", link, f"UNIX-CONNECT:{path}"],
    )
    return 0  # not reached


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run a seed procedure end to end and verify it")
    run_sub = run.add_subparsers(dest="run_command", required=True, metavar="SCENARIO")

    def scenario_parser(name: str, help: str, arch: bool) -> Any:
        p = run_sub.add_parser(name, help=help, description=help)
        if arch:
            p.add_argument(
                "--arch",
                choices=list(ARCHES),
                default="armv7",
                help="guest architecture (default armv7, the seed's)",
            )
        p.add_argument(
            "--pages",
            type=int,
            default=16384,
            metavar="N",
            help="dirtyram pages (16384 = 64 MiB; the seed used 409600)",
        )
        p.add_argument(
            "--burst",
            type=int,
            default=512,
            metavar="M",
            help="pages dirtied per burst (512; the seed 2048)",
        )
        p.add_argument(
            "--period",
            type=int,
            default=50,
            metavar="MS",
            help="ms between bursts (50, the seed's)",
        )
        p.add_argument("--mem", type=int, default=512, metavar="MB", help="guest RAM (512)")
        p.add_argument(
            "--smp", type=int, default=1, metavar="N", help="guest CPUs (1; the seed ran 2)"
        )
        p.add_argument(
            "--bandwidth",
            metavar="RATE",
            help="shape the boards' lab link, e.g. 1gbit (the seed's) or 100mbit",
        )
        p.add_argument(
            "--round-trips",
            type=int,
            default=0,
            metavar="K",
            help="migrate A -> B -> A K times instead of once, switching the route each time",
        )
        p.add_argument(
            "--retries",
            type=int,
            default=0,
            metavar="N",
            help="try a failed migration again N times (after healing the lab)",
        )
        p.add_argument(
            "--stall-timeout",
            type=float,
            default=15.0,
            metavar="S",
            help="cancel a migration that makes no progress for S seconds (15)",
        )
        p.add_argument(
            "--corrupt-page",
            type=int,
            metavar="PAGE",
            help="negative control: alter guest page PAGE (from RAM's start) on "
            "the destination before the comparison; the verdict must be FAIL "
            "naming it",
        )
        p.add_argument("--accel", choices=ACCELS, default="auto")
        p.add_argument(
            "--qemu-suite",
            choices=SUITES,
            default=DEFAULT_SUITE,
            help="board image: QEMU 10.0.x (bookworm-backports) or 7.2 (bookworm)",
        )
        p.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name ({DEFAULT_LAB})")
        p.add_argument("--topology", metavar="FILE", help="topology of a new lab")
        p.add_argument(
            "--report",
            metavar="DIR",
            help="write the JSON result, both consoles and the QEMU logs here",
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        return p

    def shmem_options(p: Any) -> None:
        p.add_argument(
            "--shm-size",
            default="1M",
            metavar="SIZE",
            help="the shared region (1M, the seed's /dev/shm/aeshmem)",
        )
        p.add_argument(
            "--workload",
            choices=("dirty", "remap"),
            default="remap",
            help="tstaeshm dirty (the seed's tight loop; exposes QEMU TCG's lost "
            "writes) or remap (a fresh mapping per write; must pass)",
        )
        p.add_argument(
            "--duration",
            type=float,
            default=10.0,
            metavar="S",
            help="how long the guest program writes (10)",
        )
        p.add_argument(
            "--remote",
            action="store_true",
            help="replicate to a receiver on the second board over the lab network",
        )
        p.add_argument(
            "--drop-every",
            type=int,
            metavar="N",
            help="negative control: the daemon drops every Nth page; the verdict "
            "must be FAIL listing them",
        )

    migration = scenario_parser(
        "migration", "seed procedure 1: live migration verified page by page", arch=True
    )
    migration.set_defaults(func=cmd_migration)
    shmem = run_sub.add_parser(
        "shmem",
        help="seed procedure 2: shared-memory replication from QEMU's dirty log",
        description="seed procedure 2: shared-memory replication from QEMU's dirty log",
    )
    shmem.add_argument(
        "--arch",
        choices=list(ARCHES),
        default="armv8",
        help="guest architecture (default armv8, the seed's)",
    )
    shmem_options(shmem)
    shmem.add_argument("--accel", choices=ACCELS, default="auto")
    shmem.add_argument("--qemu-suite", choices=SUITES, default=DEFAULT_SUITE)
    shmem.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name ({DEFAULT_LAB})")
    shmem.add_argument("--topology", metavar="FILE", help="topology of a new lab")
    shmem.add_argument(
        "--report",
        metavar="DIR",
        help="write the JSON result, the guest console and the daemon log here",
    )
    shmem.add_argument("--json", action="store_true", help="print the result as JSON")
    shmem.set_defaults(func=cmd_shmem)
    every = scenario_parser(
        "all", "every scenario on both guest architectures, one summary", arch=False
    )
    shmem_options(every)
    every.set_defaults(func=cmd_all)

    for name, socket_name, what in (
        ("console", "serial.sock", "serial console"),
        ("monitor", "hmp.sock", "HMP monitor"),
    ):
        p = sub.add_parser(name, help=f"attach to the {what} of the guest on a board")
        p.add_argument("node", help="gauss-a or gauss-b")
        p.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name ({DEFAULT_LAB})")
        p.set_defaults(func=lambda a, s=socket_name, w=what: _attach(a, s, w))
