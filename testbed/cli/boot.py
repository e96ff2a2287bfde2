"""testbed boot"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from testbed.arch import ARCHES
from testbed.cli.output import err, out, print_json, table
from testbed.config import DEFAULT_SUITE, PLATFORM_NAMES, SUITES
from testbed.node.accel import ACCELS

LOG = logging.getLogger("testbed")


def cmd_boot(args: argparse.Namespace) -> int:
    from testbed import docker_client
    from testbed.boot import BootRequest, boot

    arches = list(ARCHES) if args.arch == "all" else [args.arch]
    requests = [
        BootRequest(
            a, args.mem, args.smp, args.accel, args.qemu_suite, args.root, platform=args.platform
        )
        for a in arches
    ]
    for request in requests:
        request.validate()
    client = docker_client.connect()
    results = []
    for request in requests:
        where = f" ({request.platform})" if request.platform else ""
        with err.status(f"booting {request.arch} in a board container{where}") as status:

            def on_log(line: str, status: Any = status, arch: str = request.arch) -> None:
                LOG.debug("%s: %s", arch, line)
                status.update(f"{arch}: {line.split(': ', 1)[-1][:100]}")

            results.append(boot(client, request, on_log))
    if args.json:
        print_json(results[0] if len(results) == 1 else results)
        return 0
    out.print(
        table(
            "boot",
            [
                "arch",
                "uname -m",
                "kernel",
                "QEMU",
                "accel",
                "board",
                "root",
                "-m",
                "-smp",
                "boot to ready",
            ],
            [
                [
                    str(r["arch"]),
                    str(r["guest_uname"]),
                    str(r["kernel_release"]),
                    str(r["qemu_version"]),
                    str(r["accel"]),
                    f"{r['platform']}{' (emulated)' if r['emulated'] else ''}",
                    str(r["root"]),
                    str(r["mem_mb"]),
                    str(r["smp"]),
                    f"{r['boot_seconds']:.2f} s",
                ]
                for r in results
            ],
        )
    )
    return 0


def register(sub: Any) -> None:
    boot = sub.add_parser(
        "boot",
        help="boot a guest in a throwaway board container and report",
        description="Boot the guest of an architecture inside a new board container, run "
        "`uname -m` in it over the serial console, report and remove the container.",
    )
    boot.add_argument(
        "--arch",
        choices=[*ARCHES, "all"],
        default="all",
        help="guest architecture (default: all, one after the other)",
    )
    boot.add_argument("--mem", type=int, default=512, metavar="MB", help="guest RAM (512)")
    boot.add_argument("--smp", type=int, default=1, metavar="N", help="guest CPUs (1)")
    boot.add_argument(
        "--accel",
        choices=ACCELS,
        default="auto",
        help="auto: KVM where the Docker engine can give it to the board for this guest "
        "(an arm64 engine with /dev/kvm; armv7 also needs AArch32 at EL1), else TCG",
    )
    boot.add_argument(
        "--platform",
        choices=list(PLATFORM_NAMES),
        help="the board image's platform (default: the engine's own); another one runs "
        "by emulation (binfmt_misc, qemu-user) from `testbed images build --platform P`",
    )
    boot.add_argument(
        "--qemu-suite",
        choices=SUITES,
        default=DEFAULT_SUITE,
        help="which board image (QEMU version) to use",
    )
    boot.add_argument(
        "--root",
        choices=("initramfs", "disk"),
        default="initramfs",
        help="stay in the initramfs, or switch_root into (a copy of) the ext3 "
        "root disk on virtio-blk",
    )
    boot.add_argument("--json", action="store_true", help="print the result as JSON")
    boot.set_defaults(func=cmd_boot)
