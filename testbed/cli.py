"""The ``testbed`` command line: parses, calls the library, prints.  Nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from testbed import __version__
from testbed.arch import ARCHES
from testbed.boot import ROOTS
from testbed.errors import UserError
from testbed.images import DEFAULT_SUITE, SUITES
from testbed.node.accel import ACCELS

LOG = logging.getLogger("testbed")
out = Console()
err = Console(stderr=True)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


# -- images ---------------------------------------------------------------------------------
def cmd_images_build(args: argparse.Namespace) -> int:
    from testbed import docker_client, images

    client = docker_client.connect()
    built = []
    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.fields[name]}"), BarColumn(),
        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
        TextColumn("{task.description}"), console=err, transient=False,
    ) as progress:
        base = progress.add_task("", name="base image", total=None)
        how = images.ensure_base_image(client)
        progress.update(base, total=1, completed=1, description=f"{images.BASE_IMAGE}: {how}")
        tasks: dict[str, Any] = {}

        def on_progress(tag: str, done: int, total: int | None, detail: str) -> None:
            if tag not in tasks:
                tasks[tag] = progress.add_task("", name=tag, total=total)
            progress.update(tasks[tag], completed=done, total=total, description=detail)

        if args.only in (None, "board"):
            built.append(images.build_board(
                client, args.qemu_suite, nocache=args.no_cache, on_progress=on_progress))
        if args.only in (None, "nfs"):
            built.append(images.build_nfs(client, nocache=args.no_cache, on_progress=on_progress))
    if args.json:
        _print_json({"base_image": how, "images": [b.to_dict() for b in built]})
        return 0
    table = Table(title="images")
    for column in ("image", "QEMU", "size", "build time", "steps cached"):
        table.add_column(column)
    for b in built:
        table.add_row(b.tag, b.qemu_version or "-", _mib(b.size_bytes), f"{b.seconds:.1f} s",
                      f"{b.cached_steps}/{b.steps}")
    out.print(table)
    return 0


def cmd_images_list(args: argparse.Namespace) -> int:
    from testbed import docker_client, images

    found = images.list_images(docker_client.connect())
    if args.json:
        _print_json([info.to_dict() for info in found])
        return 0
    table = Table(title="testbed images")
    for column in ("image", "id", "QEMU", "size", "created"):
        table.add_column(column)
    for info in found:
        table.add_row(info.tag, info.image_id, info.qemu_version or "-", _mib(info.size_bytes),
                      info.created[:19])
    out.print(table)
    if not found:
        err.print("no testbed images: build them with `testbed images build`")
    return 0


# -- boot -----------------------------------------------------------------------------------
def cmd_boot(args: argparse.Namespace) -> int:
    from testbed import docker_client
    from testbed.boot import BootRequest, boot

    arches = list(ARCHES) if args.arch == "all" else [args.arch]
    requests = [
        BootRequest(a, args.mem, args.smp, args.accel, args.qemu_suite, args.root) for a in arches
    ]
    for request in requests:
        request.validate()
    client = docker_client.connect()
    results = []
    for request in requests:
        with err.status(f"booting {request.arch} in a board container") as status:
            def on_log(line: str, status: Any = status, arch: str = request.arch) -> None:
                LOG.debug("%s: %s", arch, line)
                status.update(f"{arch}: {line.split(': ', 1)[-1][:100]}")

            results.append(boot(client, request, on_log))
    if args.json:
        _print_json(results[0] if len(results) == 1 else results)
        return 0
    table = Table(title="boot")
    for column in ("arch", "uname -m", "kernel", "QEMU", "accel", "root", "-m", "-smp",
                   "boot to ready"):
        table.add_column(column)
    for r in results:
        table.add_row(str(r["arch"]), str(r["guest_uname"]), str(r["kernel_release"]),
                      str(r["qemu_version"]), str(r["accel"]), str(r["root"]), str(r["mem_mb"]),
                      str(r["smp"]),
                      f"{r['boot_seconds']:.2f} s")
    out.print(table)
    return 0


# -- down -----------------------------------------------------------------------------------
def cmd_down(args: argparse.Namespace) -> int:
    from testbed import cleanup, docker_client

    removed = cleanup.remove_labelled(docker_client.connect(), lab=None if args.all else args.lab)
    if args.json:
        _print_json(removed.to_dict())
    else:
        out.print(removed.summary())
    return 0


# -- parser ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the problem and where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="testbed",
        description="ARM KVM/QEMU dirty-page logging validation in Docker containers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    img = sub.add_parser("images", help="build and list the board and NFS images")
    img_sub = img.add_subparsers(dest="images_command", required=True, metavar="SUBCOMMAND")
    build = img_sub.add_parser(
        "build", help="build the board image (QEMU + guests) and the NFS server image",
        description="Build gauss-testbed/qemu-arm:SUITE and gauss-testbed/nfs. When "
        "debian:bookworm-slim is missing and cannot be pulled, it is made with debootstrap.",
    )
    build.add_argument("--qemu-suite", choices=SUITES, default=DEFAULT_SUITE,
                       help=f"Debian suite QEMU comes from (default {DEFAULT_SUITE}: 10.0.x; "
                       "bookworm: 7.2)")
    build.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    build.add_argument("--only", choices=("board", "nfs"), help="build only this image")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=cmd_images_build)
    lst = img_sub.add_parser("list", help="list the testbed images with their QEMU version")
    lst.add_argument("--json", action="store_true", help="print the result as JSON")
    lst.set_defaults(func=cmd_images_list)

    boot = sub.add_parser(
        "boot", help="boot a guest in a throwaway board container and report",
        description="Boot the guest of an architecture inside a new board container, run "
        "`uname -m` in it over the serial console, report and remove the container.",
    )
    boot.add_argument("--arch", choices=[*ARCHES, "all"], default="all",
                      help="guest architecture (default: all, one after the other)")
    boot.add_argument("--mem", type=int, default=512, metavar="MB", help="guest RAM (512)")
    boot.add_argument("--smp", type=int, default=1, metavar="N", help="guest CPUs (1)")
    boot.add_argument("--accel", choices=ACCELS, default="auto",
                      help="auto: KVM where the host can run the guest, else TCG")
    boot.add_argument("--qemu-suite", choices=SUITES, default=DEFAULT_SUITE,
                      help="which board image (QEMU version) to use")
    boot.add_argument("--root", choices=ROOTS, default="initramfs",
                      help="stay in the initramfs, or switch_root into (a copy of) the ext3 "
                      "root disk on virtio-blk")
    boot.add_argument("--json", action="store_true", help="print the result as JSON")
    boot.set_defaults(func=cmd_boot)

    down = sub.add_parser("down", help="remove everything a lab (or the testbed) created")
    down.add_argument("--lab", default="gauss", help="lab name (default gauss)")
    down.add_argument("--all", action="store_true",
                      help="every testbed object of every lab, boot containers included")
    down.add_argument("--json", action="store_true", help="print the result as JSON")
    down.set_defaults(func=cmd_down)
    return parser


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    # SIGTERM unwinds like Ctrl-C, so every `finally` removes what it created.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: everything this command created has been removed")
        return 130
