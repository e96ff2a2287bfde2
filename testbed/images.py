"""Building the board and NFS images (and, on machines without a registry, their base),
for the engine's own platform or, by emulation, for the other one.

Image names (``PREFIX`` is ``TESTBED_IMAGE_PREFIX``, default ``gauss-testbed``):

=================  ====================================  ===================================
platform           board / NFS                           base
=================  ====================================  ===================================
the engine's own   PREFIX/qemu-arm:SUITE, PREFIX/nfs:latest  debian:bookworm-slim
another one        PREFIX/qemu-arm:SUITE-ARCH,           arm64v8/debian:bookworm-slim or
                   PREFIX/nfs:latest-ARCH                amd64/debian:bookworm-slim
=================  ====================================  ===================================

so the plain names are always the engine's platform (the lab and every command use them)
and an image of another platform carries its architecture in the tag.  Every image the
testbed builds is labelled ``io.gauss-testbed.platform``; ``require_image`` compares that
label and image inspect's Architecture with what the caller needs and refuses a mismatch
before anything is created."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path

import docker
import docker.errors
import docker.models.images

from testbed import config, image_inputs, labels
from testbed.config import DEFAULT_SUITE as DEFAULT_SUITE  # re-exported: images.DEFAULT_SUITE
from testbed.config import SUITES
from testbed.errors import UserError
from testbed.platforms import (
    PLATFORM_LABEL,
    Platform,
    emulation_problem,
    engine_platform,
    image_platform,
    platform_of_arch,
    read_binfmt,
)

LOG = logging.getLogger(__name__)

BASE_IMAGE = "debian:bookworm-slim"
BASE_SUITE = "bookworm"
BOARD_REPOSITORY = f"{config.IMAGE_PREFIX}/qemu-arm"
NFS_REPOSITORY = f"{config.IMAGE_PREFIX}/nfs"
NFS_IMAGE = f"{NFS_REPOSITORY}:latest"
# Python packages the node agent needs inside the board image, installed from wheels.
NODE_PACKAGES = ("pyroute2", "qemu.qmp")
# SOURCE_DATE_EPOCH of the wheel build: 1980-01-01, the earliest date a zip entry can hold
WHEEL_DATE = "315532800"
DOCKERFILES = {"board": "Dockerfile.qemu-arm", "nfs": "Dockerfile.nfs"}
# The base image's environment (what Debian's own images set; docker import sets none).
BASE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# on_progress(task, done, total, detail): a build step finished (total may be None).
ProgressCallback = Callable[[str, int, int | None, str], None]


def check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise UserError(f"unknown QEMU suite {suite!r}", f"use one of {', '.join(SUITES)}")


@dataclass(frozen=True)
class Target:
    """The platform images are built for, and the engine that builds and runs them."""

    platform: Platform
    engine: Platform

    @classmethod
    def native(cls, engine: Platform) -> Target:
        return cls(engine, engine)

    @property
    def foreign(self) -> bool:
        """Built and run by emulation (qemu-user through binfmt_misc)."""
        return self.platform != self.engine

    @property
    def suffix(self) -> str:
        return f"-{self.platform.arch}" if self.foreign else ""

    def board(self, suite: str = DEFAULT_SUITE) -> str:
        check_suite(suite)
        return f"{BOARD_REPOSITORY}:{suite}{self.suffix}"

    @property
    def nfs(self) -> str:
        return f"{NFS_IMAGE}{self.suffix}"

    @property
    def base(self) -> str:
        """The base of the board and NFS images (Dockerfile ARG BASE_IMAGE)."""
        return f"{self.platform.hub_namespace}/{BASE_IMAGE}" if self.foreign else BASE_IMAGE

    @property
    def guest_base(self) -> str:
        """The base of the board's guest stage, which makes architecture-independent files
        (ARM kernels, static ARM programs, initramfs, ext3 disks): always the engine's own
        platform, so an emulated board build compiles nothing under emulation and shares
        that stage's cache with the native build."""
        return BASE_IMAGE

    def build_flags(self, suite: str | None = None) -> str:
        """The options of ``testbed images build`` that make these images."""
        flags = ""
        if suite and suite != DEFAULT_SUITE:
            flags += f" --qemu-suite {suite}"
        if self.foreign:
            flags += f" --platform {self.platform.name}"
        return flags


def board_image(suite: str = DEFAULT_SUITE, target: Target | None = None) -> str:
    """The board image's name; without ``target``, the engine's own platform."""
    check_suite(suite)
    return target.board(suite) if target else f"{BOARD_REPOSITORY}:{suite}"


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
    platform: str | None = None
    # nothing built: the image's inputs label matched (testbed.image_inputs)
    up_to_date: bool = False

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


# -- which image is which ----------------------------------------------------------------------
def _build_hint(tag: str, target: Target) -> str:
    suite = None
    if tag.startswith(BOARD_REPOSITORY + ":"):
        suite = tag.split(":", 1)[1].removesuffix(target.suffix)
    return f"`testbed images build{target.build_flags(suite)}`"


def platform_mismatch(
    tag: str, attrs: dict[str, object], expected: Platform, engine: Platform
) -> str | None:
    """Why image ``tag`` (its inspect ``attrs``) is not an image for ``expected``, or None.

    Both the Architecture that image inspect reports and the testbed's platform label must
    say ``expected`` (the label is missing only on images built before it existed: those
    are accepted where inspect agrees and they carry the engine's own, plain name)."""
    arch, label = image_platform(attrs)
    actual = arch.name if arch else f"architecture {attrs.get('Architecture')!r}"
    if arch != expected:
        return f"image {tag} is {actual}, not {expected.name}"
    if label is not None and label != expected.name:
        return f"image {tag} is labelled {label} but is {actual}"
    if label is None and expected != engine:
        return f"image {tag} has no {PLATFORM_LABEL} label"
    return None


def require_image(
    client: docker.DockerClient, tag: str, platform: Platform | None = None
) -> docker.models.images.Image:
    """The image ``tag``, checked to be for ``platform`` (default: the engine's own).
    Missing or of another platform: one line naming the problem and the build command."""
    engine = engine_platform(client)
    target = Target(platform or engine, engine)
    hint = _build_hint(tag, target)
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise UserError(f"image {tag} is missing", f"build it with {hint}") from None
    problem = platform_mismatch(tag, image.attrs, target.platform, engine)
    if problem:
        raise UserError(problem, f"run {hint}")
    return image


# -- base image ---------------------------------------------------------------------------
def ensure_base_image(
    client: docker.DockerClient,
    allow_pull: bool = True,
    *,
    name: str = BASE_IMAGE,
    platform: Platform | None = None,
) -> str:
    """Make sure the base image ``name`` for ``platform`` (default: the engine's) exists:
    present, pulled, or made with debootstrap.  A present one of another platform is
    refused (it would build images that are not what their names say).

    Returns how it was obtained: ``present``, ``pulled`` or ``debootstrap``."""
    engine = engine_platform(client)
    platform = platform or engine
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        pass
    else:
        _check_base(name, image.attrs, platform)
        return "present"
    if allow_pull:
        try:
            LOG.info("pulling %s for %s", name, platform.name)
            repository, tag = name.rsplit(":", 1)
            if platform == engine:
                client.images.pull(repository, tag=tag)
            else:
                client.images.pull(repository, tag=tag, platform=platform.name)
            _check_base(name, client.images.get(name).attrs, platform)
            return "pulled"
        except docker.errors.APIError as exc:
            LOG.warning("cannot pull %s (%s); making it with debootstrap", name, exc)
    debootstrap_base_image(client, name, platform)
    return "debootstrap"


def _check_base(name: str, attrs: dict[str, object], platform: Platform) -> None:
    arch, _ = image_platform(attrs)
    if arch != platform:
        actual = arch.name if arch else repr(attrs.get("Architecture"))
        raise UserError(
            f"base image {name} is {actual}, not {platform.name} (made with `docker import`, "
            "which records the engine's architecture?)",
            f"remove it (docker rmi {name}) and run `testbed images build` again",
        )


def docker_archive_files(
    repo_tag: str,
    platform: Platform,
    diff_id: str,
    *,
    created: str | None = None,
    created_by: str = "debootstrap",
) -> dict[str, bytes]:
    """The small files of a ``docker load`` archive with one layer (``layer/layer.tar``,
    whose sha256 is ``diff_id``): ``{path: content}``.

    Unlike ``docker import``, which records the engine's architecture, the config names
    ``platform``: ``docker load`` keeps it, image inspect reports it and the classic builder
    builds FROM it (each RUN under binfmt emulation) with results of that platform."""
    created = created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    image_config = {
        "architecture": platform.arch,
        "os": "linux",
        "created": created,
        "config": {
            "Env": [BASE_PATH],
            "Cmd": ["bash"],
            "Labels": {PLATFORM_LABEL: platform.name},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": created_by}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": ["layer/layer.tar"]}]
    return {config_name: config_bytes, "manifest.json": json.dumps(manifest).encode()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def write_docker_archive(
    layer_tar: Path, repo_tag: str, platform: Platform, out: Path, created_by: str = ""
) -> Path:
    """A ``docker load`` archive of the root filesystem tarball ``layer_tar``."""
    files = docker_archive_files(
        repo_tag, platform, sha256_file(layer_tar), created_by=created_by or "debootstrap"
    )
    with tarfile.open(out, "w") as archive:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(content))
        archive.add(str(layer_tar), arcname="layer/layer.tar")
    return out


def debootstrap_base_image(
    client: docker.DockerClient, name: str = BASE_IMAGE, platform: Platform | None = None
) -> None:
    """Make the base image ``name`` for ``platform`` with debootstrap on this machine and
    ``docker load`` it (see docker_archive_files): the image says the right architecture
    also when it is not the engine's."""
    platform = platform or engine_platform(client)
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin")
    if debootstrap is None:
        raise UserError(
            f"base image {name} is missing, cannot be pulled, and debootstrap is not installed",
            "install it (apt-get install debootstrap) and run again as root",
        )
    if os.geteuid() != 0:
        raise UserError(
            f"base image {name} is missing and cannot be pulled; making it with "
            "debootstrap needs root",
            "run `testbed images build` as root once",
        )
    here = platform_of_arch(os.uname().machine)
    if here != platform:  # debootstrap's second stage runs the target's programs here
        problem = emulation_problem(platform, *read_binfmt(platform))
        if problem:
            raise UserError(f"cannot debootstrap {name}: {problem[0]} on this machine", problem[1])
    command = [
        debootstrap,
        "--variant=minbase",
        f"--arch={platform.arch}",
        BASE_SUITE,
    ]
    LOG.warning(
        "base image %s is missing: creating it for %s with debootstrap (%s)",
        name,
        platform.name,
        "about 30 s" if here == platform else "several minutes under emulation",
    )
    with tempfile.TemporaryDirectory(prefix="testbed-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        layer = Path(tmp) / "layer.tar"
        archive = Path(tmp) / "image.tar"
        subprocess.run([*command, str(rootfs)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(layer), "."], check=True
        )
        shutil.rmtree(rootfs)
        write_docker_archive(layer, name, platform, archive, " ".join(command[1:]))
        layer.unlink()
        with open(archive, "rb") as data:
            client.images.load(data)
    _check_base(name, client.images.get(name).attrs, platform)
    LOG.info("base image %s (%s) created from debootstrap", name, platform.name)


def ensure_base_images(
    client: docker.DockerClient,
    target: Target,
    only: str | None = None,
    allow_pull: bool = True,
    on_base: Callable[[str, str], None] | None = None,
) -> dict[str, str]:
    """Every base image the build of ``target`` needs: ``{name: how it was obtained}``."""
    needed: dict[str, Platform] = {}
    if only in (None, "board"):
        needed[target.guest_base] = target.engine
    needed[target.base] = target.platform
    found = {}
    for name, platform in needed.items():
        found[name] = ensure_base_image(client, allow_pull, name=name, platform=platform)
        if on_base:
            on_base(name, found[name])
    return found


# -- wheels for the board image --------------------------------------------------------------
def wheel_pins() -> list[str]:
    """The node agent's dependencies as pip requirements, pinned to the host's versions."""
    pins = []
    for name in NODE_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def build_wheels(root: Path, dest: Path) -> list[Path]:
    """Wheels of testbed and of the node agent's dependencies, in the build context.

    pip cannot reach PyPI from inside ``docker build`` on every machine (TLS interception),
    so the board image installs these with --no-index.  All of them are pure Python, so
    the same wheels serve images of every platform."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    # setuptools reuses build/lib: a module deleted from the tree would live on in the wheel
    for stale in (root / "build" / "lib", *root.glob("build/bdist.*")):
        shutil.rmtree(stale, ignore_errors=True)
    pins = wheel_pins()
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
    # the same sources give the same wheel, byte for byte (zip entries carry this date), so
    # docker build's cache keeps the layers that install it
    env = {**os.environ, "SOURCE_DATE_EPOCH": WHEEL_DATE}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
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
    platform: Platform | None = None,
    image_labels: dict[str, str] | None = None,
) -> BuiltImage:
    """``docker build`` through the API (the engine's classic builder, no BuildKit),
    reporting each step; the full log goes to log_path."""
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
            labels=image_labels or {},
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("error", "").strip()
                fix = f"see {log_path}" if log_path else None
                if platform and "exec format error" in " ".join([detail, *tail]):
                    fix = f"the engine cannot run {platform.name} programs: " + (
                        "as root: apt-get install qemu-user-static binfmt-support"
                    )
                raise UserError(
                    f"building {tag} failed: {detail} (last output: {' | '.join(tail[-3:])})",
                    fix,
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
        image_id=str(image_id or image.id),
        size_bytes=int(image.attrs.get("Size", 0)),
        seconds=round(time.monotonic() - started, 1),
        steps=steps,
        cached_steps=cached,
        platform=platform.name if platform else None,
    )


def inspect_board(client: docker.DockerClient, tag: str) -> tuple[str, str]:
    """(Debian architecture of the image's content, QEMU version), asked of the image."""
    out = client.containers.run(
        tag,
        ["sh", "-c", "dpkg --print-architecture && qemu-system-aarch64 --version"],
        remove=True,
        network_mode="none",
        labels=labels.for_object("build"),
    ).decode()
    match = re.search(r"version (\d+\.\d+\.\d+)", out)
    if not match:
        raise RuntimeError(f"cannot read the QEMU version of {tag}: {out!r}")
    return out.split()[0], match.group(1)


def query_qemu_version(client: docker.DockerClient, tag: str) -> str:
    return inspect_board(client, tag)[1]


def label_image(client: docker.DockerClient, tag: str, extra: dict[str, str]) -> None:
    """Add labels to an existing image (a build of ``FROM tag`` that adds only labels)."""
    dockerfile = io.BytesIO(f"FROM {tag}\n".encode())
    client.images.build(fileobj=dockerfile, tag=tag, labels=extra, rm=True, forcerm=True)


def _verify_built(client: docker.DockerClient, tag: str, target: Target) -> None:
    """A built image must say its platform: inspect's Architecture and the label."""
    problem = platform_mismatch(tag, client.images.get(tag).attrs, target.platform, target.engine)
    if problem:
        raise UserError(
            f"built {problem}: its base image {target.base} is not what its name says",
            f"remove it (docker rmi {target.base}) and run "
            f"`testbed images build{target.build_flags()}` again",
        )


def _buildargs(target: Target, **extra: str) -> dict[str, str]:
    return {
        "BASE_IMAGE": target.base,
        "GUEST_BASE_IMAGE": target.guest_base,
        "TESTBED_PLATFORM": target.platform.name,
        **extra,
    }


def _target(client: docker.DockerClient, target: Target | None) -> Target:
    return target or Target.native(engine_platform(client))


def _inputs(client: docker.DockerClient, root: Path, kind: str, target: Target, suite: str) -> str:
    """The digest of what the ``kind`` image (board or nfs) is built from."""
    bases = [target.base, target.guest_base] if kind == "board" else [target.base]
    return image_inputs.digest(
        root,
        DOCKERFILES[kind],
        _kind_buildargs(kind, target, suite),
        {name: str(client.images.get(name).id) for name in bases},
        wheel_pins(),
    )


def _kind_buildargs(kind: str, target: Target, suite: str) -> dict[str, str]:
    if kind == "board":
        return _buildargs(target, QEMU_SUITE=suite)
    return {"BASE_IMAGE": target.base, "TESTBED_PLATFORM": target.platform.name}


def _up_to_date(
    client: docker.DockerClient, tag: str, kind: str, inputs: str, target: Target
) -> BuiltImage | None:
    """The image ``tag`` as it is, when it was built from ``inputs`` and says its platform
    (and, for a board, its QEMU version); None when it must be built."""
    started = time.monotonic()
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    found = image.labels or {}
    if found.get(labels.INPUTS) != inputs:
        LOG.info("%s: built from other inputs than these, building", tag)
        return None
    if kind == "board" and not found.get(labels.QEMU_VERSION):
        return None
    if platform_mismatch(tag, image.attrs, target.platform, target.engine):
        return None
    return BuiltImage(
        name=tag.split(":")[0],
        tag=tag,
        image_id=str(image.id),
        size_bytes=int(image.attrs.get("Size", 0)),
        seconds=round(time.monotonic() - started, 1),
        steps=0,
        cached_steps=0,
        qemu_version=found.get(labels.QEMU_VERSION) if kind == "board" else None,
        platform=target.platform.name,
        up_to_date=True,
    )


def build_board(
    client: docker.DockerClient,
    suite: str = DEFAULT_SUITE,
    *,
    nocache: bool = False,
    on_progress: ProgressCallback | None = None,
    wheels: bool = True,
    target: Target | None = None,
    inputs: str | None = None,
) -> BuiltImage:
    """``wheels=False``: build/wheels was just made (build_all builds it once for both).
    ``inputs``: the digest to label the image with (build_all computes it)."""
    check_suite(suite)
    target = _target(client, target)
    root = project_root()
    if wheels:
        build_wheels(root, root / "build" / "wheels")
    tag = target.board(suite)
    logs = root / "build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    built = build_image(
        client,
        root,
        DOCKERFILES["board"],
        tag,
        buildargs=_kind_buildargs("board", target, suite),
        nocache=nocache,
        on_progress=on_progress,
        log_path=logs / f"qemu-arm-{suite}{target.suffix}.log",
        platform=target.platform,
        image_labels={labels.INPUTS: inputs} if inputs else None,
    )
    _verify_built(client, tag, target)
    debian_arch, version = inspect_board(client, tag)
    if debian_arch != target.platform.arch:
        raise UserError(
            f"built {tag} runs {debian_arch} programs, not {target.platform.arch}",
            f"remove {target.base} (docker rmi {target.base}) and build again",
        )
    current = client.images.get(tag).labels.get(labels.QEMU_VERSION)
    if current != version:
        label_image(client, tag, {labels.QEMU_VERSION: version})
    built.qemu_version = version
    built.image_id = str(client.images.get(tag).id)
    return built


def build_nfs(
    client: docker.DockerClient,
    *,
    nocache: bool = False,
    on_progress: ProgressCallback | None = None,
    wheels: bool = True,
    target: Target | None = None,
    inputs: str | None = None,
) -> BuiltImage:
    target = _target(client, target)
    root = project_root()
    if wheels:
        build_wheels(root, root / "build" / "wheels")
    logs = root / "build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    built = build_image(
        client,
        root,
        DOCKERFILES["nfs"],
        target.nfs,
        buildargs=_kind_buildargs("nfs", target, DEFAULT_SUITE),
        nocache=nocache,
        on_progress=on_progress,
        log_path=logs / f"nfs{target.suffix}.log",
        platform=target.platform,
        image_labels={labels.INPUTS: inputs} if inputs else None,
    )
    _verify_built(client, target.nfs, target)
    return built


def build_all(
    client: docker.DockerClient,
    suite: str = DEFAULT_SUITE,
    *,
    nocache: bool = False,
    on_progress: ProgressCallback | None = None,
    only: str | None = None,
    target: Target | None = None,
) -> list[BuiltImage]:
    """The board image of ``suite`` and the NFS image (or ``only`` one) for ``target``
    (default: the engine's platform), the wheels they both install built once.  An image
    whose inputs label matches what it would be built from now is kept as it is (unless
    ``nocache``); on_progress then reports it done in 0 steps."""
    check_suite(suite)
    target = _target(client, target)
    root = project_root()
    kinds = [kind for kind in ("board", "nfs") if only in (None, kind)]
    tags = {"board": target.board(suite), "nfs": target.nfs}
    inputs = {kind: _inputs(client, root, kind, target, suite) for kind in kinds}
    done: dict[str, BuiltImage] = {}
    if not nocache:
        for kind in kinds:
            kept = _up_to_date(client, tags[kind], kind, inputs[kind], target)
            if kept:
                LOG.info("%s: up to date (inputs %s)", kept.tag, inputs[kind])
                if on_progress:
                    on_progress(kept.tag, 0, 0, "up to date")
                done[kind] = kept
    if len(done) < len(kinds):
        build_wheels(root, root / "build" / "wheels")
    builders = {"board": partial(build_board, client, suite), "nfs": partial(build_nfs, client)}
    for kind in kinds:
        if kind not in done:
            done[kind] = builders[kind](
                nocache=nocache,
                on_progress=on_progress,
                wheels=False,
                target=target,
                inputs=inputs[kind],
            )
    return [done[kind] for kind in kinds]


@dataclass
class ImageInfo:
    tag: str
    image_id: str
    size_bytes: int
    created: str
    qemu_version: str | None
    platform: str | None = None  # the label; inspect's Architecture where there is none
    architecture: str | None = None  # what image inspect says

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def list_images(client: docker.DockerClient) -> list[ImageInfo]:
    found = []
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith((BOARD_REPOSITORY + ":", NFS_REPOSITORY + ":")):
                arch, label = image_platform(image.attrs)
                found.append(
                    ImageInfo(
                        tag=tag,
                        image_id=str(image.short_id),
                        size_bytes=int(image.attrs.get("Size", 0)),
                        created=str(image.attrs.get("Created", "")),
                        qemu_version=image.labels.get(labels.QEMU_VERSION),
                        platform=label or (arch.name if arch else None),
                        architecture=str(image.attrs.get("Architecture", "")) or None,
                    )
                )
    return sorted(found, key=lambda info: info.tag)
