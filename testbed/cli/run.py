"""testbed run migration|shmem|all, and the person's way into a guest: console, monitor."""

from __future__ import annotations

import argparse
import os
import shutil
import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from testbed import codec
from testbed.arch import ARCHES
from testbed.cli.output import (
    err,
    migration_progress,
    out,
    print_json,
    show_sample,
    table,
    verdict_text,
)
from testbed.config import DEFAULT_LAB, DEFAULT_SUITE, SUITES
from testbed.errors import UserError
from testbed.node.accel import ACCELS

if TYPE_CHECKING:
    from testbed.privileges import Privileges
    from testbed.scenarios.common import CleanupReport

KNOWN_DEFECT_EXIT = 0  # known defects exit 0 unless --strict


def exit_code(verdict: str, strict: bool) -> int:
    if verdict == "pass":
        return 0
    if verdict == "known-defect" and not strict:
        return KNOWN_DEFECT_EXIT
    return 1


def _migration_params(args: argparse.Namespace, arch: str) -> Any:
    from testbed.cli.lab import check_bandwidth
    from testbed.scenarios.injections import parse_injections
    from testbed.scenarios.migration import MigrationParams

    check_bandwidth(args.bandwidth)
    for option, value in (("--round-trips", args.round_trips), ("--retries", args.retries)):
        if value < 0:
            raise UserError(f"{option} {value} is out of range", "use 0 or more")
    if not args.stall_timeout > 0:  # also NaN
        raise UserError(
            f"--stall-timeout {args.stall_timeout:g} is out of range", "use more than 0 seconds"
        )
    loads = tuple(args.load) if args.load else (f"seed:{args.pages}:{args.burst}:{args.period}",)
    params = MigrationParams(
        arch=arch,
        loads=loads,
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
        hold=args.hold,
        inject=parse_injections(args.inject, args.corrupt_page),
        keep=args.keep,
    )
    params.validate()
    return params


def _shmem_params(args: argparse.Namespace, arch: str, workload: str) -> Any:
    from testbed.scenarios.shmem import ShmemParams

    if args.drop_every is not None and args.drop_every < 1:
        raise UserError(f"--drop-every {args.drop_every} is out of range", "use 1 or more")
    inject = set(args.inject_shmem or [])
    unknown = inject - {"tamper-region", "corrupt-replica", "shm-first", "paused-vm"}
    if unknown:
        raise UserError(
            f"--inject {sorted(unknown)[0]}: unknown fault for shmem",
            "use tamper-region, corrupt-replica, shm-first or paused-vm",
        )
    params = ShmemParams(
        arch=arch,
        shm_size=args.shm_size,
        workload=workload,
        duration=args.duration,
        remote=args.remote,
        drop_every=args.drop_every,
        accel=args.accel,
        suite=args.qemu_suite,
        lab=args.lab,
        topology_file=args.topology,
        tamper_region="tamper-region" in inject,
        corrupt_replica="corrupt-replica" in inject,
        shm_first="shm-first" in inject,
        pause_vm="paused-vm" in inject,
        keep=args.keep,
    )
    params.validate()
    return params


def _prepare(args: argparse.Namespace) -> None:
    from testbed.cli.lab import check_topology_option
    from testbed.config import check_lab_name

    check_lab_name(args.lab)
    if args.report:
        from pathlib import Path

        from testbed.cli.matrix import check_writable_dir

        # tried, not only asked of os.access: root "may" write in /proc, yet cannot
        check_writable_dir("--report", Path(args.report))
    check_topology_option(args.topology)
    if args.topology:
        from testbed import topology

        topology.load(args.topology)


def _run_migration(params: Any, report: str | None) -> Any:
    from testbed import docker_client
    from testbed.protocol import MigrationSample
    from testbed.scenarios.migration import MigrationScenario

    client = docker_client.connect()
    with migration_progress() as progress:
        task = progress.add_task(f"migration {params.arch}", total=None, detail="", visible=False)

        def on_step(text: str) -> None:
            progress.console.print(f"  {text}", highlight=False)

        def on_progress(s: MigrationSample) -> None:
            progress.update(
                task,
                visible=True,
                completed=s.transferred,
                total=max(s.total, s.transferred) or None,
                detail=f"{s.status} {s.mbps:.0f} Mbit/s, round "
                f"{s.dirty_sync_count}, dirty {s.dirty_pages_rate} pages/s",
            )

        scenario = MigrationScenario(client, params, on_step, on_progress)
        result = scenario.run()
    return _reported(result, scenario.artifacts, report)


def _run_shmem(params: Any, report: str | None) -> Any:
    from testbed import docker_client
    from testbed.scenarios.shmem import ShmemScenario

    client = docker_client.connect()
    with err.status(f"shmem {params.arch}") as status:

        def on_step(text: str) -> None:
            status.update(text)
            err.print(f"  {text}", highlight=False)

        scenario = ShmemScenario(client, params, on_step)
        result = scenario.run()
    return _reported(result, scenario.artifacts, report)


def _print_checks(result: Any) -> None:
    failing = [c for c in result.checks if c.failed]
    for check in failing[:12]:
        out.print(f"[red]FAIL[/red] {check.line()}", highlight=False)
    if len(failing) > 12:
        out.print(f"... and {len(failing) - 12} more failing checks (see --json)")
    if result.known_defect is not None:
        kd = result.known_defect
        out.print(
            f"[yellow]known defect[/yellow] {kd.id}: {kd.title}"
            + (f" (fixed upstream by {kd.fix})" if kd.fix else ""),
            highlight=False,
        )
    passed = sum(1 for c in result.checks if c.outcome.value == "pass")
    out.print(
        f"{verdict_text(result.verdict.value)}: {passed} of {len(result.checks)} checks "
        f"passed, {result.wall_seconds:.0f} s; {result.cleanup}",
        highlight=False,
    )


def _print_migration(result: Any) -> None:
    rows = []
    for m in result.migrations:
        mig, mem, net = m.migration, m.memory, m.network
        stale = sum(x.stale_after - x.stale_before for x in m.loads)
        rows.append(
            [
                f"{m.index + 1}: {m.source} -> {m.destination}"
                + (f" (attempt {m.attempt})" if m.attempt > 1 else ""),
                mig.status if mig else "-",
                f"{mig.total_ms} ms" if mig else "-",
                f"{mig.downtime_ms} ms" if mig else "-",
                f"{(mig.transferred_bytes if mig else 0) / 2**20:.0f} MiB",
                f"{mig.dirty_sync_count}" if mig else "-",
                f"{len(mem.differing_pages)}/{mem.pages_compared}" if mem else "-",
                str(stale) if m.loads else "-",
                f"{net.outage_ms} ms" if net and net.outage_ms is not None else "-",
                verdict_text(m.verdict),
            ]
        )
    out.print(
        table(
            f"migration {result.arch} (QEMU {result.qemu_version}, {result.accel}, -smp "
            f"{result.smp}, {' + '.join(result.loads)})",
            [
                "migration",
                "status",
                "total",
                "downtime",
                "sent",
                "syncs",
                "pages differing",
                "stale",
                "outage",
                "verdict",
            ],
            rows,
        )
    )
    _print_checks(result)


def _print_shmem(result: Any) -> None:
    c = result.checkpoints
    final = result.daemon.final if result.daemon else None
    out.print(
        table(
            f"shmem {result.arch} (QEMU {result.qemu_version}, {result.accel}, {result.workload}"
            f"{', remote' if result.remote else ''})",
            [
                "rounds",
                "pages copied",
                "checkpoints exact/all",
                "pages lost",
                "sum -r src",
                "sum -r dest",
                "guest sum -r",
                "Mbit/s",
                "stop to exit",
                "verdict",
            ],
            [
                [
                    str(result.rounds),
                    str(result.pages_copied),
                    f"{c.exact}/{c.count}",
                    str(result.pages_lost),
                    final.sum_r_src if final else "-",
                    final.sum_r_dest if final else "-",
                    result.guest_sum or "-",
                    f"{result.replication_mbps:.1f}",
                    f"{result.stop_to_exit_seconds} s" if result.stop_to_exit_seconds else "-",
                    verdict_text(result.verdict.value),
                ]
            ],
        )
    )
    _print_checks(result)


def cmd_migration(args: argparse.Namespace) -> int:
    _prepare(args)
    params = _migration_params(args, args.arch)
    result = _run_migration(params, args.report)
    if args.json:
        print_json(codec.to_json(result))
    else:
        _print_migration(result)
    return exit_code(result.verdict.value, args.strict)


def cmd_shmem(args: argparse.Namespace) -> int:
    _prepare(args)
    params = _shmem_params(args, args.arch, args.workload)
    result = _run_shmem(params, args.report)
    if args.json:
        print_json(codec.to_json(result))
    else:
        _print_shmem(result)
    return exit_code(result.verdict.value, args.strict)


def cmd_all(args: argparse.Namespace) -> int:
    """Every seed procedure with the seed's own loads, on both guest architectures: the
    two migrations one after the other beside the two shared-memory runs (their guest is
    named "shmem", so that it and a migration's guest can share a board), unless the two
    architectures need different board privileges (KVM for one only): then one by one."""
    from dataclasses import replace

    from testbed import docker_client
    from testbed.platforms import board_privileges_by_arch

    _prepare(args)
    # --keep keeps the lab, and the last guest of each track (an earlier one would be in
    # the way of the next run)
    last = list(ARCHES)[-1]
    migrations = [replace(_migration_params(args, a), keep=args.keep and a == last) for a in ARCHES]
    shmems = [
        replace(_shmem_params(args, a, args.workload), vm="shmem", keep=args.keep and a == last)
        for a in ARCHES
    ]
    client = docker_client.connect()
    by_arch = board_privileges_by_arch(client, args.accel, list(ARCHES), args.qemu_suite)
    privileges = [p for p, _ in by_arch.values()]
    beside = all(p == privileges[0] for p in privileges)
    with _one_lab(args, privileges[0]) as ended:
        if beside:
            results = _run_beside(migrations, shmems, args.report)
        else:
            results = []
            for params in migrations:
                err.print(f"[bold]migration {params.arch}[/bold]")
                results.append(_run_migration(params, args.report))
            for params in shmems:
                err.print(f"[bold]shmem {params.arch}[/bold]")
                results.append(_run_shmem(params, args.report))
    cleanup = ended[0].summary()
    if args.report:
        from testbed.report.writer import write_report
        from testbed.scenarios.records import record_of

        write_report(args.report, [record_of(r) for r in results], title="testbed run all")
    verdicts = [r.verdict.value for r in results]
    overall = (
        "fail" if "fail" in verdicts else "known-defect" if "known-defect" in verdicts else "pass"
    )
    if args.json:
        print_json(
            {
                "verdict": overall,
                "results": [codec.to_json(r) for r in results],
                "cleanup": cleanup,
            }
        )
    else:
        out.print(
            table(
                "testbed run all",
                [
                    "scenario",
                    "arch",
                    "QEMU",
                    "accel",
                    "load",
                    "verdict",
                    "wall time",
                    "first failure",
                ],
                [
                    [
                        r.scenario,
                        r.arch,
                        r.qemu_version,
                        r.accel,
                        " + ".join(r.loads) if r.scenario == "migration" else r.workload,
                        verdict_text(r.verdict.value)
                        + (f" ({r.known_defect.id})" if r.known_defect else ""),
                        f"{r.wall_seconds:.0f} s",
                        r.first_failure[:70],
                    ]
                    for r in results
                ],
            )
        )
        out.print(f"lab {args.lab}: {cleanup}", highlight=False)
    return max(exit_code(v, args.strict) for v in verdicts)


def _one_lab(
    args: argparse.Namespace, privileges: Privileges
) -> AbstractContextManager[list[CleanupReport]]:
    """The lab every run of ``run all`` shares: up once, down at the end if created here."""
    from testbed import docker_client
    from testbed.scenarios.common import LabRun, shared_lab

    hold = LabRun(
        docker_client.connect(),
        args.lab,
        args.topology,
        args.qemu_suite,
        args.keep,
        lambda text: err.print(f"  {text}", highlight=False),
    )
    err.print(f"  lab {args.lab}: up for every run")
    return shared_lab(hold, args.bandwidth, privileges)


def _run_beside(migrations: list[Any], shmems: list[Any], report: str | None) -> list[Any]:
    """The migrations' track and the shared-memory track at once, on one display: a line
    per step, named by its run, and a bar per track."""
    from testbed import docker_client
    from testbed.protocol import MigrationSample
    from testbed.scenarios.beside import run_tracks
    from testbed.scenarios.migration import MigrationScenario
    from testbed.scenarios.shmem import ShmemScenario

    client = docker_client.connect()
    with migration_progress(transferred=False) as progress:

        def track_of(name: str) -> Any:
            return progress.add_task(name, total=None, detail="")

        def stepper(task: Any, name: str) -> Any:
            def on_step(text: str) -> None:
                progress.update(task, description=name, detail=text[:60], total=None)
                progress.console.print(f"  [{name}] {text}", highlight=False, markup=False)

            return on_step

        def migration(params: Any, task: Any) -> Any:
            name = f"migration {params.arch}"
            step = stepper(task, name)

            def on_progress(s: MigrationSample) -> None:
                show_sample(progress, task, s)

            def run(cancel: threading.Event) -> Any:
                scenario = MigrationScenario(client, params, step, on_progress, beside=cancel)
                return _reported(scenario.run(), scenario.artifacts, report)

            return run

        def shmem(params: Any, task: Any) -> Any:
            step = stepper(task, f"shmem {params.arch}")

            def run(cancel: threading.Event) -> Any:
                scenario = ShmemScenario(client, params, step, beside=cancel)
                return _reported(scenario.run(), scenario.artifacts, report)

            return run

        first = track_of(f"migration {migrations[0].arch}")
        second = track_of(f"shmem {shmems[0].arch}")
        return run_tracks(
            [
                [migration(params, first) for params in migrations],
                [shmem(params, second) for params in shmems],
            ]
        )


def _reported(result: Any, artifacts: dict[str, str], report: str | None) -> Any:
    """The run's result, its report page written first when --report asked for one."""
    if report:
        from testbed.scenarios.records import write_run_report

        write_run_report(report, result, artifacts)
    return result


def _attach(args: argparse.Namespace, socket_name: str, what: str) -> int:
    from testbed import docker_client
    from testbed.config import check_lab_name
    from testbed.lab.lab import Lab

    check_lab_name(args.lab)
    lab = Lab(docker_client.connect(), args.lab)
    container = lab.container(args.node)
    path = f"/run/testbed/vm/guest/{socket_name}"
    if container.exec_run(["test", "-S", path])[0] != 0:
        raise UserError(
            f"no guest runs on {args.node}", f"start one: testbed guest start {args.node}"
        )
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise UserError(f"the {what} needs the docker command line client", "install it")
    err.print(f"{what} of the guest on {args.node}; leave with Ctrl-] (or Ctrl-C)")
    link = "STDIO,raw,echo=0,escape=0x1d"
    os.execv(
        docker_cli,
        [docker_cli, "exec", "-it", container.name or "", "socat", link, f"UNIX-CONNECT:{path}"],
    )
    return 0  # not reached


def _common(p: Any) -> None:
    p.add_argument(
        "--accel",
        choices=ACCELS,
        default="auto",
        help="auto: KVM where the host can run the guest, else TCG",
    )
    p.add_argument(
        "--qemu-suite",
        choices=SUITES,
        default=DEFAULT_SUITE,
        help="board image: QEMU 10.0.x (bookworm-backports) or 7.2 (bookworm)",
    )
    p.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name ({DEFAULT_LAB})")
    p.add_argument("--topology", metavar="FILE", help="topology of a new lab")
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the lab and the last guest running, for inspection (a lab this "
        "run created is otherwise taken down at its end)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 for a known defect too (default: known defects exit 0)",
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        help="write the run's page (index.html), its JSON and every console and log into DIR",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _migration_options(p: Any) -> None:
    p.add_argument(
        "--load",
        action="append",
        metavar="NAME[:ARGS][@CPU]",
        help="a guest load, repeatable: seed[:PAGES[:BURST[:PERIOD_MS]]] (dirtyram), "
        "hot[:PAGES], random[:PAGES[:PERIOD_US[:SEED]]], wide[:PAGES[:PERIOD_MS]]; "
        "@CPU pins it to a vCPU "
        "(default: seed with --pages/--burst/--period)",
    )
    p.add_argument(
        "--pages",
        type=int,
        default=16384,
        metavar="N",
        help="seed load pages (16384 = 64 MiB; the seed used 409600)",
    )
    p.add_argument(
        "--burst",
        type=int,
        default=512,
        metavar="M",
        help="seed load pages per burst (512; the seed 2048)",
    )
    p.add_argument(
        "--period",
        type=int,
        default=50,
        metavar="MS",
        help="seed load ms between bursts (50, the seed's)",
    )
    p.add_argument("--mem", type=int, default=512, metavar="MB", help="guest RAM (512)")
    p.add_argument("--smp", type=int, default=1, metavar="N", help="guest CPUs (1; the seed ran 2)")
    p.add_argument(
        "--bandwidth",
        metavar="RATE",
        help="shape the boards' lab link, e.g. 1gbit (the seed's) or 100mbit",
    )
    p.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="S",
        help="keep the migration iterating at downtime-limit 1 ms (and 100 MiB/s) "
        "for S seconds before letting it converge: many dirty-sync rounds",
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
        help="negative control: alter guest page PAGE (from RAM's start) on the "
        "destination before the comparison (same as --inject corrupt-page=PAGE)",
    )
    from testbed.scenarios.injections import INJECTIONS

    p.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="FAULT",
        help="negative control, repeatable: "
        + "; ".join(
            f"{k}{'=' + v.split(':')[0] if ':' in v else ''}" for k, v in INJECTIONS.items()
        ),
    )


def _shmem_options(p: Any, default_workload: str) -> None:
    p.add_argument(
        "--shm-size",
        default="1M",
        metavar="SIZE",
        help="the shared region (1M, the seed's /dev/shm/aeshmem)",
    )
    p.add_argument(
        "--workload",
        choices=("dirty", "remap"),
        default=default_workload,
        help="tstaeshm dirty (the seed's tight loop; QEMU TCG loses some of its "
        "writes: a known defect) or remap (a fresh mapping per write; must pass)",
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
        help="negative control: the daemon drops every Nth page; the checkpoints "
        "must fail listing them",
    )


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run a seed procedure end to end and verify it")
    run_sub = run.add_subparsers(dest="run_command", required=True, metavar="SCENARIO")

    migration = run_sub.add_parser(
        "migration",
        help="seed procedure 1: live migration verified page by page",
        description="Seed procedure 1: live migration of a guest whose disk is on the NFS "
        "server, verified page by page; exit 0 for PASS (and known defects unless --strict).",
    )
    migration.add_argument(
        "--arch",
        choices=list(ARCHES),
        default="armv7",
        help="guest architecture (default armv7, the seed's)",
    )
    _migration_options(migration)
    _common(migration)
    migration.set_defaults(func=cmd_migration)

    shmem = run_sub.add_parser(
        "shmem",
        help="seed procedure 2: shared-memory replication from QEMU's dirty log",
        description="Seed procedure 2: a guest dirties a shared-memory device; a host daemon "
        "replicates it from QEMU's dirty log and checks every convergence.",
    )
    shmem.add_argument(
        "--arch",
        choices=list(ARCHES),
        default="armv8",
        help="guest architecture (default armv8, the seed's)",
    )
    _shmem_options(shmem, "remap")
    shmem.add_argument(
        "--inject",
        dest="inject_shmem",
        action="append",
        default=[],
        metavar="FAULT",
        help="negative control: tamper-region (the host writes "
        "the region after the final checkpoint: guest-checksum must fail) or "
        "corrupt-replica (the daemon alters a page of the replica before the final "
        "checkpoint: final-identity and sum-r must fail) or "
        "shm-first (the shared block first in RAM order: QEMU 10.0.2 aborts) or "
        "paused-vm (the VM paused after the daemon ended: vm-resumed must fail)",
    )
    _common(shmem)
    shmem.set_defaults(func=cmd_shmem)

    every = run_sub.add_parser(
        "all",
        help="every seed procedure on both guest architectures, with the seed's loads",
        description="Live migration (dirtyram) and shared-memory replication (tstaeshm "
        "dirty, the seed's tight loop) on armv7 and armv8, one summary.  Known QEMU defects "
        "show as such (exit 0 unless --strict).",
    )
    _migration_options(every)
    _shmem_options(every, "dirty")
    every.set_defaults(inject_shmem=[])
    _common(every)
    every.set_defaults(func=cmd_all)

    for name, socket_name, what in (
        ("console", "console.sock", "serial console"),
        ("monitor", "monitor.sock", "HMP monitor"),
    ):
        p = sub.add_parser(name, help=f"attach to the {what} of the guest on a board")
        p.add_argument("node", help="gauss-a or gauss-b")
        p.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name ({DEFAULT_LAB})")
        p.set_defaults(func=lambda a, s=socket_name, w=what: _attach(a, s, w))
