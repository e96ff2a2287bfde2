"""testbed guest start|stop|list|run: the seed's guest, by hand."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any, cast

from testbed import codec
from testbed.arch import ARCHES
from testbed.cli.output import err, out, print_json, table
from testbed.codec import JsonObject
from testbed.config import DEFAULT_LAB
from testbed.errors import UserError
from testbed.node.accel import ACCELS

if TYPE_CHECKING:
    from testbed.lab.lab import Lab


def _lab(args: argparse.Namespace) -> Lab:
    from testbed import docker_client
    from testbed.config import check_lab_name
    from testbed.lab.lab import Lab

    name = check_lab_name(args.lab)  # before the engine is contacted
    return Lab(docker_client.connect(), name)


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:  # also NaN
        raise UserError(f"--timeout {timeout:g} is out of range", "use more than 0 seconds")


def cmd_start(args: argparse.Namespace) -> int:
    from testbed.platforms import board_privileges_for
    from testbed.scenarios.byhand import GuestRequest, start_guest

    shm = args.shm
    if shm is not None:
        from testbed.scenarios.shmem import ShmemParams

        try:
            ShmemParams(shm_size=shm).validate()
        except UserError as exc:  # the option is --shm here
            raise UserError(exc.problem.replace("--shm-size", "--shm", 1), exc.fix) from None
    request = GuestRequest(
        args.arch, args.mem, args.smp, args.accel, args.incoming, shm, args.fresh_disk
    )
    request.validate()
    lab = _lab(args)
    _ = lab.topology  # a clear error when the lab is not up
    privileges, accel = board_privileges_for(lab.client, args.accel, args.arch, lab.suite)
    if privileges.devices:
        lab.up(board_privileges=privileges)  # the boards need /dev/kvm
    with err.status(f"guest on {args.node}") as status:
        info, ready = start_guest(lab, args.node, request, accel, lambda t: status.update(t))
    lab.close()
    if args.json:
        print_json({"vm": codec.to_json(info), "ready": codec.to_json(ready)})
        return 0
    what = (
        "waits for a migration (-incoming tcp:0:4321 -S)"
        if args.incoming
        else f"ready after {ready.seconds:.1f} s, root on the {ready.root}"
        if ready
        else ""
    )
    out.print(
        f"{args.node}: {info.arch} guest, QEMU {info.qemu_version} ({info.accel}), pid "
        f"{info.pid}: {what}",
        highlight=False,
    )
    out.print(
        f"  console: testbed console {args.node}   monitor: testbed monitor {args.node}"
        f"   stop: testbed guest stop {args.node}",
        highlight=False,
    )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from testbed.protocol import VmStop
    from testbed.scenarios.byhand import board

    _check_timeout(args.timeout)
    lab = _lab(args)
    board(lab, args.node)
    stopped = lab.call(args.node, VmStop(name=args.vm, timeout=args.timeout))
    label = "guest" if args.vm == "guest" else f"guest {args.vm!r}"
    lab.close()
    if args.json:
        print_json(codec.to_json(stopped))
    elif stopped.how == "no such VM":
        out.print(f"{args.node}: no {label} runs")
    else:
        out.print(
            f"{args.node}: {label} stopped ({stopped.how}); QEMU's last line: {stopped.log_tail}",
            highlight=False,
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from testbed.scenarios.byhand import list_guests

    lab = _lab(args)
    rows = list_guests(lab)
    lab.close()
    if args.json:
        print_json(
            [
                {
                    "node": r.node,
                    "uptime_seconds": r.uptime_seconds,
                    **cast(JsonObject, codec.to_json(r.vm)),  # a dataclass: a JSON object
                }
                for r in rows
            ]
        )
        return 0
    out.print(
        table(
            f"guests of lab {args.lab}",
            ["node", "name", "arch", "QEMU", "accel", "state", "uptime", "pid", "incoming"],
            [
                [
                    r.node,
                    r.vm.name,
                    r.vm.arch,
                    r.vm.qemu_version,
                    r.vm.accel,
                    r.vm.status,
                    f"{r.uptime_seconds:.0f} s",
                    str(r.vm.pid),
                    r.vm.spec.incoming or "-",
                ]
                for r in rows
            ],
        )
    )
    if not rows:
        err.print(f"no guest runs in lab {args.lab}: testbed guest start gauss-a")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from testbed.protocol import ConsoleRun
    from testbed.scenarios.byhand import board

    words = args.cmd
    if not words:
        raise UserError("no command given", "use testbed guest run NODE -- COMMAND")
    _check_timeout(args.timeout)
    lab = _lab(args)
    board(lab, args.node)
    started = time.monotonic()
    result = lab.call(args.node, ConsoleRun(" ".join(words), timeout=args.timeout, name=args.vm))
    lab.close()
    if args.json:
        print_json(
            {
                "output": result.output,
                "status": result.status,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    elif result.output:
        sys.stdout.write(result.output + "\n")
    return result.status


VM_HELP = "the VM's name on the board (default guest; run all's shared-memory guest: shmem)"


def register(sub: Any) -> None:
    guest = sub.add_parser("guest", help="the seed's guest by hand: start, stop, list, run")
    gsub = guest.add_subparsers(dest="guest_command", required=True, metavar="VERB")

    def verb(name: str, help: str, json_flag: bool = True) -> Any:
        p = gsub.add_parser(name, help=help, description=help)
        p.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name ({DEFAULT_LAB})")
        if json_flag:
            p.add_argument("--json", action="store_true", help="print the result as JSON")
        return p

    start = verb(
        "start",
        "start the seed's guest on a board (root disk over NFS, tap0, the "
        "shared MAC); it runs until `testbed guest stop`",
    )
    start.add_argument("node", help="gauss-a or gauss-b")
    start.add_argument("--arch", choices=list(ARCHES), default="armv7")
    start.add_argument("--mem", type=int, default=512, metavar="MB")
    start.add_argument("--smp", type=int, default=1, metavar="N")
    start.add_argument("--accel", choices=ACCELS, default="auto")
    start.add_argument(
        "--incoming", action="store_true", help="wait for a migration: -incoming tcp:0:4321 -S"
    )
    start.add_argument(
        "--shm",
        metavar="SIZE",
        help="add the seed's shared-memory device on /dev/shm/aeshmem (e.g. 1M)",
    )
    start.add_argument(
        "--fresh-disk", action="store_true", help="put a pristine root disk on the NFS export first"
    )
    start.set_defaults(func=cmd_start)

    stop = verb("stop", "stop the guest on a board (QMP quit, then SIGTERM, then SIGKILL)")
    stop.add_argument("node")
    stop.add_argument("--timeout", type=float, default=10.0, metavar="S")
    stop.add_argument("--vm", default="guest", help=VM_HELP)
    stop.set_defaults(func=cmd_stop)

    verb("list", "every guest of the lab: node, arch, QEMU, state, uptime").set_defaults(
        func=cmd_list
    )

    run = verb(
        "run",
        "type a command on the guest's serial console; print its output and "
        "exit with its status (e.g. -- 'dirtyram 16384 512 50 &' or -- tbload hot 256 &)",
    )
    run.add_argument("node")
    run.add_argument("--timeout", type=float, default=60.0, metavar="S")
    run.add_argument("--vm", default="guest", help=VM_HELP)
    run.add_argument("cmd", nargs="*", help="-- COMMAND [ARGS...]")
    run.set_defaults(func=cmd_run)
