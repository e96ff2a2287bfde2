"""Building the board and NFS images (and, on machines without a registry, their base)."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import docker
import docker.errors

from testbed import config, labels
from testbed.errors import UserError

LOG = logging.getLogger(__name__)

BASE_IMAGE = "debian:bookworm-slim"
BASE_SUITE = "bookworm"
SUITES = ("bookworm-backports", "bookworm")  # where QEMU comes from: 10.0.x, 7.2
DEFAULT_SUITE = "bookworm-backports"
BOARD_REPOSITORY = f"{config.IMAGE_PREFIX}/qemu-arm"
NFS_IMAGE = f"{config.IMAGE_PREFIX}/nfs:latest"
# Python packages the node agent needs inside the board image, installed from wheels.
NODE_PACKAGES = ("pyroute2", "qemu.qmp")

# on_progress(task, done, total, detail): a build step finished (total may be None).
ProgressCallback = Callable[[str, int, int | None, str], None]


def board_image(suite: str = DEFAULT_SUITE) -> str:
    check_suite(suite)
    return f"{BOARD_REPOSITORY}:{suite}"


def check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise UserError(f"unknown QEMU suite {suite!r}", f"use one of {', '.join(SUITES)}")


@dataclass
class BuiltImage:
    name: str
    tag: str
    image_id: str
    size_bytes: int
    seconds: float
    steps: int
    cached_steps: int
    qemu_version: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def project_root() -> Path:
    """The source tree holding the Dockerfiles (a clone of gauss-testbed)."""
    candidates = [os.environ.get("TESTBED_SOURCE"), Path(__file__).resolve().parent.parent]
    for candidate in candidates:
        if candidate and (Path(candidate) / "Dockerfile.qemu-arm").is_file():
            return Path(candidate)
    raise UserError(
        "cannot find Dockerfile.qemu-arm next to the testbed package",
        "install testbed from a clone (pip install -e .) or set TESTBED_SOURCE to the clone",
    )


def require_image(client: docker.DockerClient, tag: str) -> docker.models.images.Image:
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise UserError(f"image {tag} is missing", "build it with `testbed images build`") from None


# -- base image ---------------------------------------------------------------------------
def ensure_base_image(client: docker.DockerClient, allow_pull: bool = True) -> str:
    """Make sure debian:bookworm-slim exists: present, pulled, or made with debootstrap.

    Returns how it was obtained: ``present``, ``pulled`` or ``debootstrap``."""
    try:
        client.images.get(BASE_IMAGE)
        return "present"
    except docker.errors.ImageNotFound:
        pass
    if allow_pull:
        try:
            LOG.info("pulling %s", BASE_IMAGE)
            client.images.pull(BASE_IMAGE)
            return "pulled"
        except docker.errors.APIError as exc:
            LOG.warning("cannot pull %s (%s); making it with debootstrap", BASE_IMAGE, exc)
    debootstrap_base_image(client)
    return "debootstrap"


def debootstrap_base_image(client: docker.DockerClient) -> None:
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin")
    if debootstrap is None:
        raise UserError(
            f"base image {BASE_IMAGE} is missing, cannot be pulled, and debootstrap is "
            "not installed",
            "install it (apt-get install debootstrap) and run again as root",
        )
    if os.geteuid() != 0:
        raise UserError(
            f"base image {BASE_IMAGE} is missing and cannot be pulled; making it with "
            "debootstrap needs root",
            "run `testbed images build` as root once",
        )
    LOG.warning("base image %s is missing: creating it with debootstrap (about 30 s)", BASE_IMAGE)
    with tempfile.TemporaryDirectory(prefix="testbed-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            [debootstrap, "--variant=minbase", BASE_SUITE, str(rootfs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repository, tag = BASE_IMAGE.split(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
    LOG.info("base image %s created from debootstrap", BASE_IMAGE)


# -- wheels for the board image --------------------------------------------------------------
def build_wheels(root: Path, dest: Path) -> list[Path]:
    """Wheels of testbed and of the node agent's dependencies, in the build context.

    pip cannot reach PyPI from inside ``docker build`` on every machine (TLS interception),
    so the board image installs these with --no-index."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    pins = []
    for name in NODE_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--quiet",
        "-w",
        str(dest),
        str(root),
        *pins,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"cannot build the wheels for the board image ({last})",
            "check that pip works on this machine (pip wheel " + " ".join(pins) + ")",
        )
    return sorted(dest.glob("*.whl"))


# -- docker build --------------------------------------------------------------------------
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")


def build_image(
    client: docker.DockerClient,
    root: Path,
    dockerfile: str,
    tag: str,
    *,
    buildargs: dict[str, str] | None = None,
    nocache: bool = False,
    on_progress: ProgressCallback | None = None,
    log_path: Path | None = None,
) -> BuiltImage:
    """``docker build`` through the API, reporting each step; the full log goes to log_path."""
    started = time.monotonic()
    steps = cached = 0
    image_id = None
    tail: list[str] = []
    log = open(log_path, "w") if log_path else None
    try:
        stream = client.api.build(
            path=str(root),
            dockerfile=dockerfile,
            tag=tag,
            buildargs=buildargs or {},
            nocache=nocache,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("error", "").strip()
                raise UserError(
                    f"building {tag} failed: {detail} (last output: {' | '.join(tail[-3:])})",
                    f"see {log_path}" if log_path else None,
                )
            text = chunk.get("stream", "")
            if not text:
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                continue
            if log:
                log.write(text)
            for line in text.splitlines():
                line = line.strip()
                if not line:
                    continue
                tail = (tail + [line])[-20:]
                if "Using cache" in line:
                    cached += 1
                step = _STEP.match(line)
                if step:
                    steps = int(step.group(2))
                    if on_progress:
                        on_progress(tag, int(step.group(1)) - 1, steps, step.group(3)[:70])
    finally:
        if log:
            log.close()
    image = client.images.get(tag)
    if on_progress:
        on_progress(tag, steps, steps, "done")
    return BuiltImage(
        name=tag.split(":")[0],
        tag=tag,
        image_id=image_id or image.id,
        size_bytes=int(image.attrs.get("Size", 0)),
        seconds=round(time.monotonic() - started, 1),
        steps=steps,
        cached_steps=cached,
    )


def query_qemu_version(client: docker.DockerClient, tag: str) -> str:
    out = client.containers.run(
        tag,
        ["qemu-system-aarch64", "--version"],
        remove=True,
        network_mode="none",
        labels=labels.for_object("build"),
    ).decode()
    match = re.search(r"version (\d+\.\d+\.\d+)", out)
    if not match:
        raise RuntimeError(f"cannot read the QEMU version of {tag}: {out!r}")
    return match.group(1)


def label_image(client: docker.DockerClient, tag: str, extra: dict[str, str]) -> None:
    """Add labels to an existing image (a build of ``FROM tag`` that adds only labels)."""
    dockerfile = io.BytesIO(f"FROM {tag}\n".encode())
    client.images.build(fileobj=dockerfile, tag=tag, labels=extra, rm=True, forcerm=True)


def build_board(
    client: docker.DockerClient,
    suite: str = DEFAULT_SUITE,
    *,
    nocache: bool = False,
    on_progress: ProgressCallback | None = None,
    wheels: bool = True,
) -> BuiltImage:
    """``wheels=False``: build/wheels was just made (build_all builds it once for both)."""
    check_suite(suite)
    root = project_root()
    if wheels:
        build_wheels(root, root / "build" / "wheels")
    tag = board_image(suite)
    logs = root / "build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    built = build_image(
        client,
        root,
        "Dockerfile.qemu-arm",
        tag,
        buildargs={"QEMU_SUITE": suite},
        nocache=nocache,
        on_progress=on_progress,
        log_path=logs / f"qemu-arm-{suite}.log",
    )
    version = query_qemu_version(client, tag)
    current = client.images.get(tag).labels.get(labels.QEMU_VERSION)
    if current != version:
        label_image(client, tag, {labels.QEMU_VERSION: version})
    built.qemu_version = version
    built.image_id = client.images.get(tag).id
    return built


def build_nfs(
    client: docker.DockerClient,
    *,
    nocache: bool = False,
    on_progress: ProgressCallback | None = None,
    wheels: bool = True,
) -> BuiltImage:
    root = project_root()
    if wheels:
        build_wheels(root, root / "build" / "wheels")
    logs = root / "build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return build_image(
        client,
        root,
        "Dockerfile.nfs",
        NFS_IMAGE,
        nocache=nocache,
        on_progress=on_progress,
        log_path=logs / "nfs.log",
    )


def build_all(
    client: docker.DockerClient,
    suite: str = DEFAULT_SUITE,
    *,
    nocache: bool = False,
    on_progress: ProgressCallback | None = None,
    only: str | None = None,
) -> list[BuiltImage]:
    """The board image of ``suite`` and the NFS image (or ``only`` one), the wheels they
    both install built once."""
    root = project_root()
    build_wheels(root, root / "build" / "wheels")
    built = []
    if only in (None, "board"):
        built.append(
            build_board(client, suite, nocache=nocache, on_progress=on_progress, wheels=False)
        )
    if only in (None, "nfs"):
        built.append(build_nfs(client, nocache=nocache, on_progress=on_progress, wheels=False))
    return built


@dataclass
class ImageInfo:
    tag: str
    image_id: str
    size_bytes: int
    created: str
    qemu_version: str | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def list_images(client: docker.DockerClient) -> list[ImageInfo]:
    found = []
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith((BOARD_REPOSITORY + ":", NFS_IMAGE.split(":")[0] + ":")):
                found.append(
                    ImageInfo(
                        tag=tag,
                        image_id=image.short_id,
                        size_bytes=int(image.attrs.get("Size", 0)),
                        created=image.attrs.get("Created", ""),
                        qemu_version=image.labels.get(labels.QEMU_VERSION),
                    )
                )
    return sorted(found, key=lambda info: info.tag)
