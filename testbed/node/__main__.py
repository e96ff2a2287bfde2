"""Node entry point: ``python3 -m testbed.node COMMAND``.

* ``agent``: the node agent daemon (started on demand by ``attach``);
* ``attach``: the host's stream to the agent (``docker exec -i NODE ... attach``);
* ``boot``: a one-shot boot in a throwaway container, result on stdout;
* ``replicate`` and ``receive``: the replication daemon and its remote end, runnable by
  hand in a board too;
* ``record-stream``: records a small real migration stream for the parser's tests.

One-shot commands print their result as one line, ``TESTBED-RESULT {json}``; progress
goes to stderr through logging."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from testbed import codec, protocol
from testbed.errors import UserError

RESULT_PREFIX = "TESTBED-RESULT "


def _emit(obj: object) -> None:
    sys.stdout.write(RESULT_PREFIX + codec.dumps(obj) + "\n")
    sys.stdout.flush()


def _cmd_agent(args: argparse.Namespace) -> int:
    from testbed.node.agent import main as agent_main

    return agent_main(args.socket)


def _cmd_attach(args: argparse.Namespace) -> int:
    from testbed.node.attach import main as attach_main

    return attach_main(args.socket)


def _cmd_boot(args: argparse.Namespace) -> int:
    from testbed.node.boot import boot_guest

    _emit(boot_guest(args.arch, args.mem, args.smp, args.accel, args.timeout, args.root))
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
            corrupt_final_page=args.corrupt_final_page,
        )
    )
    return 0


def _cmd_receive(args: argparse.Namespace) -> int:
    from testbed.node.replicate import serve_receiver

    _emit(serve_receiver(args.listen, args.dest, once=not args.serve_forever))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m testbed.node")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    agent = sub.add_parser("agent", help="the node agent daemon")
    agent.add_argument("--socket", default=protocol.AGENT_SOCKET)
    agent.set_defaults(func=_cmd_agent)
    attach = sub.add_parser("attach", help="relay stdin/stdout to the agent (starts it)")
    attach.add_argument("--socket", default=protocol.AGENT_SOCKET)
    attach.set_defaults(func=_cmd_attach)

    boot = sub.add_parser("boot", help="boot a guest, run uname -m, report and shut down")
    boot.add_argument("--arch", required=True)
    boot.add_argument("--mem", type=int, default=512)
    boot.add_argument("--smp", type=int, default=1)
    boot.add_argument("--accel", default="auto")
    boot.add_argument("--timeout", type=float, default=120.0)
    boot.add_argument("--root", choices=("initramfs", "disk"), default="initramfs")
    boot.set_defaults(func=_cmd_boot)

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
        "--drop-every", type=int, metavar="N", help="negative control: drop every Nth page"
    )
    rep.add_argument(
        "--corrupt-final-page",
        type=int,
        metavar="P",
        help="negative control: alter page P of the replica just before the final checkpoint",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command not in ("agent", "attach"):
        # docker stop / the host's Ctrl-C arrive as SIGTERM: unwind so QEMU is shut down
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from testbed.node.replicate import ReplicationError

    try:
        return int(args.func(args))
    except (UserError, ReplicationError) as exc:
        _emit({"error": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # reported to the host as one line; details on stderr
        from testbed.node.machine import VMLaunchFailure

        if isinstance(exc, VMLaunchFailure):
            print(exc.details(), file=sys.stderr)
        else:
            logging.getLogger("testbed.node").exception("%s failed", args.command)
        _emit({"error": f"{args.command} failed in the node: {exc}"})
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
