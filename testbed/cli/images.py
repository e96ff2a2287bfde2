"""testbed images build|list"""

from __future__ import annotations

import argparse
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from testbed.cli.output import err, mib, out, print_json, table
from testbed.config import DEFAULT_SUITE, PLATFORM_NAMES, SUITES


def cmd_build(args: argparse.Namespace) -> int:
    from testbed import docker_client, images, platforms

    client = docker_client.connect()
    engine = platforms.engine_platform(client)
    target = images.Target(
        platforms.get_platform(args.platform) if args.platform else engine, engine
    )
    # before anything is pulled, made or built: can the engine run the target's programs?
    platforms.check_emulation(client, target.platform, engine)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[name]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=False,
    ) as progress:
        base = progress.add_task("", name="base images", total=None)

        def on_base(name: str, how: str) -> None:
            progress.update(base, description=f"{name}: {how}")

        bases = images.ensure_base_images(client, target, only=args.only, on_base=on_base)
        progress.update(
            base,
            total=1,
            completed=1,
            description=", ".join(f"{name}: {how}" for name, how in bases.items()),
        )
        tasks: dict[str, Any] = {}

        def on_progress(tag: str, done: int, total: int | None, detail: str) -> None:
            if tag not in tasks:
                tasks[tag] = progress.add_task("", name=tag, total=total)
            progress.update(tasks[tag], completed=done, total=total, description=detail)

        built = images.build_all(
            client,
            args.qemu_suite,
            nocache=args.no_cache,
            on_progress=on_progress,
            only=args.only,
            target=target,
        )
    if args.json:
        print_json(
            {
                "platform": target.platform.name,
                "engine_platform": engine.name,
                "emulated": target.foreign,
                "base_image": bases[target.base],
                "base_images": bases,
                "images": [b.to_dict() for b in built],
            }
        )
        return 0
    title = f"images for {target.platform.name}" + (
        f" (built by emulation on this {engine.name} engine)" if target.foreign else ""
    )
    out.print(
        table(
            title,
            ["image", "platform", "QEMU", "size", "build time", "steps cached"],
            [
                [
                    b.tag,
                    b.platform or "-",
                    b.qemu_version or "-",
                    mib(b.size_bytes),
                    f"{b.seconds:.1f} s",
                    "up to date" if b.up_to_date else f"{b.cached_steps}/{b.steps}",
                ]
                for b in built
            ],
        )
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from testbed import docker_client, images

    found = images.list_images(docker_client.connect())
    if args.json:
        print_json([info.to_dict() for info in found])
        return 0
    out.print(
        table(
            "testbed images",
            ["image", "id", "platform", "QEMU", "size", "created"],
            [
                [
                    i.tag,
                    i.image_id,
                    i.platform or "-",
                    i.qemu_version or "-",
                    mib(i.size_bytes),
                    i.created[:19],
                ]
                for i in found
            ],
        )
    )
    if not found:
        err.print("no testbed images: build them with `testbed images build`")
    return 0


def register(sub: Any) -> None:
    img = sub.add_parser("images", help="build and list the board and NFS images")
    img_sub = img.add_subparsers(dest="images_command", required=True, metavar="SUBCOMMAND")
    build = img_sub.add_parser(
        "build",
        help="build the board image (QEMU + guests) and the NFS server image",
        description="Build gauss-testbed/qemu-arm:SUITE and gauss-testbed/nfs:latest for the "
        "Docker engine's platform, or with --platform for another one by emulation "
        "(gauss-testbed/qemu-arm:SUITE-ARCH, gauss-testbed/nfs:latest-ARCH). When the base "
        "image (debian:bookworm-slim, or arm64v8/ or amd64/debian:bookworm-slim for another "
        "platform) is missing and cannot be pulled, it is made with debootstrap.",
    )
    build.add_argument(
        "--qemu-suite",
        choices=SUITES,
        default=DEFAULT_SUITE,
        help=f"Debian suite QEMU comes from (default {DEFAULT_SUITE}: 10.0.x; bookworm: 7.2)",
    )
    build.add_argument(
        "--platform",
        choices=list(PLATFORM_NAMES),
        help="the images' platform (default: the engine's own); another one is built by "
        "emulation and needs binfmt_misc with qemu-user-static (flag F)",
    )
    build.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    build.add_argument("--only", choices=("board", "nfs"), help="build only this image")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=cmd_build)
    lst = img_sub.add_parser("list", help="list the testbed images with their QEMU version")
    lst.add_argument("--json", action="store_true", help="print the result as JSON")
    lst.set_defaults(func=cmd_list)
