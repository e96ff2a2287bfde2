"""testbed migrate SRC DST and testbed compare SRC DST: the seed's migration by hand."""

from __future__ import annotations

import argparse
from typing import Any

from testbed import codec
from testbed.cli.output import err, migration_progress, out, print_json, show_sample
from testbed.config import DEFAULT_LAB
from testbed.errors import UserError


def _lab(args: argparse.Namespace) -> Any:
    from testbed import docker_client
    from testbed.config import check_lab_name
    from testbed.lab.lab import Lab

    name = check_lab_name(args.lab)  # before the engine is contacted
    return Lab(docker_client.connect(), name)


def _check_two_boards(args: argparse.Namespace) -> None:
    if args.src == args.dst:
        raise UserError(
            f"SRC and DST are both {args.src}", "give two different boards, e.g. gauss-a gauss-b"
        )


def _print_memory(memory: Any) -> None:
    if not memory.differing_pages and not memory.unlocalized_blocks:
        out.print(f"guest RAM identical: {memory.pages_compared} pages compared")
        return
    out.print(
        f"[red]{len(memory.differing_pages)} of {memory.pages_compared} pages differ[/red]"
        + (
            f", MiB blocks {memory.unlocalized_blocks} differ unlocalized"
            if memory.unlocalized_blocks
            else ""
        )
    )
    for d in memory.details:
        out.print(
            f"  page {d.page} at {d.guest_physical}: source {d.source_stamp or '-'}, "
            f"destination {d.destination_stamp or '-'}",
            highlight=False,
        )
    if len(memory.differing_pages) > len(memory.details):
        out.print(f"  ... {len(memory.differing_pages) - len(memory.details)} more")


def cmd_migrate(args: argparse.Namespace) -> int:
    from testbed.protocol import MigrationSample
    from testbed.rates import parse_rate
    from testbed.scenarios.byhand import migrate

    _check_two_boards(args)
    bandwidth = None
    if args.bandwidth:
        from testbed.cli.lab import check_bandwidth

        check_bandwidth(args.bandwidth)
        try:
            bandwidth = parse_rate(args.bandwidth) // 8
        except ValueError as exc:
            raise UserError(f"--bandwidth: {exc}") from None
    lab = _lab(args)
    _ = lab.topology  # a clear error when the lab is not up
    with migration_progress() as progress:
        task = progress.add_task(f"{args.src} -> {args.dst}", total=None, detail="")

        def on_sample(s: MigrationSample) -> None:
            show_sample(progress, task, s)

        result = migrate(
            lab,
            args.src,
            args.dst,
            bandwidth,
            args.verify,
            lambda t: progress.console.print(f"  {t}", highlight=False),
            on_sample,
        )
    lab.close()
    o = result.outcome
    ok = o.status == "completed" and (
        result.memory is None
        or not (result.memory.differing_pages or result.memory.unlocalized_blocks)
    )
    if args.json:
        data = codec.to_json(result)
        assert isinstance(data, dict)
        data["outcome"] = {
            k: v
            for k, v in codec.to_json(o).items()  # type: ignore[union-attr]
            if k not in ("events", "samples")
        }
        print_json(data)
        return 0 if ok else 1
    # the figures of HMP's `info migrate`
    out.print(f"Migration status: {o.status}" + (f" ({o.error})" if o.error else ""))
    out.print(
        f"total time: {o.total_ms} ms\ndowntime: {o.downtime_ms} ms\nsetup: "
        f"{o.setup_ms} ms\ntransferred ram: {o.transferred_bytes // 1024} kbytes\n"
        f"throughput: {o.throughput_mbps:.2f} mbps\nnormal: {o.normal_pages} pages\n"
        f"duplicate: {o.zero_pages} pages\ndirty sync count: {o.dirty_sync_count}\n"
        f"dirty pages rate: {o.dirty_pages_rate} pages/s",
        highlight=False,
    )
    if result.memory is not None:
        _print_memory(result.memory)
    if o.status == "completed":
        out.print(
            f"{args.dst}: guest {result.destination_status}; {args.src}: postmigrate "
            f"(stop it: testbed guest stop {args.src}); the NFS server's route: testbed "
            f"switch-route --via {args.dst}",
            highlight=False,
        )
    return 0 if ok else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from testbed.scenarios.byhand import compare

    _check_two_boards(args)
    lab = _lab(args)
    with err.status("dumping and comparing guest RAM"):
        memory = compare(lab, args.src, args.dst)
    lab.close()
    if args.json:
        print_json(codec.to_json(memory))
    else:
        _print_memory(memory)
    return 0 if not (memory.differing_pages or memory.unlocalized_blocks) else 1


def register(sub: Any) -> None:
    mig = sub.add_parser(
        "migrate",
        help="migrate the guest from board SRC to board DST",
        description="Starts the destination with -incoming if none waits there, migrates "
        "with a progress bar, prints the figures of `info migrate`; with --verify the "
        "destination stays paused at switchover for a page-by-page comparison of guest RAM, "
        "then resumes.  Exit 0 when completed (and identical with --verify).",
    )
    mig.add_argument("src")
    mig.add_argument("dst")
    mig.add_argument(
        "--bandwidth",
        metavar="RATE",
        help="QEMU's max-bandwidth, e.g. 100mbit (default: unlimited; the lab "
        "link itself is shaped with testbed up --bandwidth)",
    )
    mig.add_argument(
        "--verify", action="store_true", help="compare guest RAM page by page at switchover"
    )
    mig.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name ({DEFAULT_LAB})")
    mig.add_argument("--json", action="store_true", help="print the result as JSON")
    mig.set_defaults(func=cmd_migrate)
    cmp = sub.add_parser(
        "compare",
        help="compare the guest RAM of two paused VMs page by page",
        description="Dumps the RAM of the paused guests on SRC and DST (QMP dump-guest-memory) and "
        "lists the differing pages with their guest-physical address; exit 1 if any.",
    )
    cmp.add_argument("src")
    cmp.add_argument("dst")
    cmp.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name ({DEFAULT_LAB})")
    cmp.add_argument("--json", action="store_true", help="print the result as JSON")
    cmp.set_defaults(func=cmd_compare)
