"""Node agent entry point: ``python3 -m testbed.node COMMAND``.

Progress goes to stderr through logging; a command's result is one line on stdout,
``TESTBED-RESULT {json}``, which the host side parses."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from testbed.errors import UserError
from testbed.node.labvm import VMError
from testbed.node.replicate import ReplicationError

RESULT_PREFIX = "TESTBED-RESULT "


def _emit(obj: dict[str, object]) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _cmd_boot(args: argparse.Namespace) -> int:
    from testbed.node.boot import boot_guest

    report = boot_guest(args.arch, args.mem, args.smp, args.accel, args.timeout, args.root)
    _emit(report.to_dict())
    return 0


def _cmd_net(args: argparse.Namespace) -> int:
    from testbed.node import net

    if args.net_command == "apply":
        config = net.NetConfig.from_dict(json.loads(args.config))
        actions = net.apply(config)
        shaping = net.shape(config.lab_device, args.bandwidth) if args.shape else None
        _emit({"actions": actions, "shaping": shaping, "forwarding": net.forwarding()})
    elif args.net_command == "routes":
        _emit({"routes": net.routes(), "forwarding": net.forwarding()})
    elif args.net_command == "route-get":
        _emit({**net.route_get(args.dst), "forwarding": net.forwarding()})
    elif args.net_command == "replace-route":
        seconds = net.replace_route(args.dst, args.via)
        _emit({"dst": args.dst, "via": args.via, "seconds": seconds})
    elif args.net_command == "delete-route":
        net.delete_route(args.dst)
        _emit({"dst": args.dst, "deleted": True})
    return 0


def _cmd_vm(args: argparse.Namespace) -> int:
    from testbed.node.labvm import LabVM, LabVMSpec

    vm = LabVM(args.name)
    cmd = args.vm_command
    if cmd == "start":
        _emit(vm.start(LabVMSpec.from_dict(json.loads(args.spec))))
    elif cmd == "ready":
        _emit(vm.wait_ready(args.timeout))
    elif cmd == "run":
        _emit(vm.run(args.cmd, args.timeout))
    elif cmd == "send":
        vm.send(args.text.encode().decode("unicode_escape"))
        _emit({"sent": True})
    elif cmd == "qmp":
        _emit({"return": vm.execute(args.execute, json.loads(args.arguments))})
    elif cmd == "hmp":
        _emit({"output": vm.hmp(args.command_line)})
    elif cmd == "console":
        text = vm.console_text(args.offset)
        _emit({"offset": args.offset, "text": text})
    elif cmd == "ram-hashes":
        _emit(vm.ram_hashes(args.mem))
    elif cmd == "ram-peek":
        _emit({"pages": vm.ram_peek([int(p) for p in args.pages.split(",") if p])})
    elif cmd == "ram-drop":
        vm.ram_drop()
        _emit({"dropped": True})
    elif cmd == "poke":
        _emit(vm.poke(args.page, bytes.fromhex(args.data)))
    elif cmd == "alive":
        _emit({"alive": vm.alive()})
    elif cmd == "stop":
        _emit(vm.stop())
    return 0


def _cmd_record_stream(args: argparse.Namespace) -> int:
    from pathlib import Path

    from testbed.node.recorder import record

    _emit(record(args.arch, Path(args.out)))
    return 0


def _cmd_replicate(args: argparse.Namespace) -> int:
    from testbed.node.replicate import run_daemon

    _emit(
        run_daemon(
            args.qmp,
            args.shm,
            args.dest,
            args.remote,
            args.drop_every,
            args.until_quiet,
            args.checkpoint_every,
            args.result,
        )
    )
    return 0


def _cmd_receive(args: argparse.Namespace) -> int:
    from testbed.node.replicate import serve_receiver

    _emit(serve_receiver(args.listen, args.dest, once=not args.serve_forever))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m testbed.node")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    boot = sub.add_parser("boot", help="boot a guest, run uname -m, report and shut down")
    boot.add_argument("--arch", required=True)
    boot.add_argument("--mem", type=int, default=512)
    boot.add_argument("--smp", type=int, default=1)
    boot.add_argument("--accel", default="auto")
    boot.add_argument("--timeout", type=float, default=120.0)
    boot.add_argument("--root", choices=("initramfs", "disk"), default="initramfs")
    boot.set_defaults(func=_cmd_boot)

    netp = sub.add_parser("net", help="the node's network (pyroute2)")
    net_sub = netp.add_subparsers(dest="net_command", required=True)
    apply = net_sub.add_parser("apply", help="taps, addresses, routes, shaping")
    apply.add_argument("--config", required=True, help="NetConfig as JSON")
    apply.add_argument("--shape", action="store_true", help="set (or clear) tc shaping")
    apply.add_argument("--bandwidth", help="tbf rate of the lab link, e.g. 1gbit")
    net_sub.add_parser("routes", help="the main routing table")
    get = net_sub.add_parser("route-get", help="ip route get DST")
    get.add_argument("dst")
    rep = net_sub.add_parser("replace-route", help="ip route replace DST via VIA")
    rep.add_argument("dst")
    rep.add_argument("via")
    dele = net_sub.add_parser("delete-route", help="ip route del DST")
    dele.add_argument("dst")
    netp.set_defaults(func=_cmd_net)

    vmp = sub.add_parser("vm", help="a long-lived guest in this node")
    vmp.add_argument("--name", default="guest")
    vm_sub = vmp.add_subparsers(dest="vm_command", required=True)
    vm_sub.add_parser("start").add_argument("--spec", required=True, help="LabVMSpec JSON")
    vm_sub.add_parser("ready").add_argument("--timeout", type=float, default=120)
    run = vm_sub.add_parser("run")
    run.add_argument("--cmd", required=True)
    run.add_argument("--timeout", type=float, default=60)
    vm_sub.add_parser("send").add_argument("--text", required=True)
    qmp = vm_sub.add_parser("qmp")
    qmp.add_argument("--execute", required=True)
    qmp.add_argument("--arguments", default="{}")
    vm_sub.add_parser("hmp").add_argument("--command-line", required=True)
    vm_sub.add_parser("console").add_argument("--offset", type=int, default=0)
    vm_sub.add_parser("ram-hashes").add_argument("--mem", type=int, required=True)
    vm_sub.add_parser("ram-peek").add_argument("--pages", required=True)
    vm_sub.add_parser("ram-drop")
    poke = vm_sub.add_parser("poke")
    poke.add_argument("--page", type=int, required=True)
    poke.add_argument("--data", required=True, help="hex bytes")
    vm_sub.add_parser("alive")
    vm_sub.add_parser("stop")
    vmp.set_defaults(func=_cmd_vm)

    rep = sub.add_parser(
        "replicate",
        help="replicate a QEMU shared-memory device from QEMU's dirty log",
        description="Keeps --dest (or a receiver at --remote) equal to the shared-memory "
        "region, from the migration stream of the VM behind --qmp; checks every "
        "convergence; on SIGUSR1 or after --until-quiet seconds without guest writes it "
        "converges a last time, checks, resumes the VM and exits.",
    )
    rep.add_argument("--qmp", required=True, help="the VM's QMP unix socket")
    rep.add_argument("--shm", default="/dev/shm/aeshmem", help="the region's host file")
    rep.add_argument("--dest", help="destination file")
    rep.add_argument("--remote", metavar="HOST:PORT", help="send pages to a receiver instead")
    rep.add_argument(
        "--verify-at-stop",
        action="store_true",
        default=True,
        help="compare at every convergence and at the end (always on)",
    )
    rep.add_argument(
        "--drop-every", type=int, metavar="N", help="negative control: drop every Nth page"
    )
    rep.add_argument(
        "--until-quiet",
        type=float,
        metavar="S",
        help="stop after the guest wrote nothing for S seconds",
    )
    rep.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="S",
        help="force a convergence (checkpoint) every S seconds (10)",
    )
    rep.add_argument("--result", help="also write the JSON result here")
    rep.set_defaults(func=_cmd_replicate)

    rcv = sub.add_parser("receive", help="the remote end of replicate --remote")
    rcv.add_argument("--listen", required=True, metavar="HOST:PORT")
    rcv.add_argument("--dest", required=True)
    rcv.add_argument(
        "--serve-forever",
        action="store_true",
        help="accept a new daemon after one leaves (a restarted daemon)",
    )
    rcv.set_defaults(func=_cmd_receive)

    rec = sub.add_parser("record-stream", help="record a small real migration stream")
    rec.add_argument("--arch", default="armv8")
    rec.add_argument("--out", required=True)
    rec.set_defaults(func=_cmd_record_stream)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # docker stop / the host's Ctrl-C arrive as SIGTERM: unwind so QEMU is shut down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return int(args.func(args))
    except (UserError, VMError, ReplicationError) as exc:
        _emit({"error": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # reported to the host as one line; details on stderr
        from testbed.node.vm import VMLaunchFailure

        if isinstance(exc, VMLaunchFailure):
            print(exc.details(), file=sys.stderr)
        else:
            logging.getLogger("testbed.node").exception("%s failed", args.command)
        _emit({"error": f"{args.command} failed in the node: {exc}"})
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
