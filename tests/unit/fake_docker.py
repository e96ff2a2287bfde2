"""A stand-in for the few Docker SDK calls the platform, image and boot code makes, so
that their decisions can be tested without an engine.  It records every container it is
asked to create."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import docker.errors

from testbed.platforms import PLATFORM_LABEL


@dataclass
class FakeImage:
    tag: str
    architecture: str
    platform_label: str | None = None
    id: str = "sha256:0123456789ab"

    @property
    def attrs(self) -> dict[str, Any]:
        labels = {PLATFORM_LABEL: self.platform_label} if self.platform_label else {}
        return {"Architecture": self.architecture, "Os": "linux", "Config": {"Labels": labels}}

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.attrs["Config"]["Labels"]
        return labels


class FakeImages:
    def __init__(self, images: list[FakeImage]) -> None:
        self.by_tag = {image.tag: image for image in images}
        self.pulled: list[tuple[str, str | None, str | None]] = []

    def get(self, tag: str) -> FakeImage:
        try:
            return self.by_tag[tag]
        except KeyError:
            raise docker.errors.ImageNotFound(f"No such image: {tag}") from None

    def pull(self, repository: str, tag: str | None = None, platform: str | None = None) -> None:
        self.pulled.append((repository, tag, platform))
        raise docker.errors.APIError("no registry here")


@dataclass
class FakeContainer:
    kwargs: dict[str, Any]
    output: bytes = b""
    exit_code: int = 0
    start_error: str | None = None
    removed: bool = False

    def start(self) -> None:
        if self.start_error:
            raise docker.errors.APIError(self.start_error, explanation=self.start_error)

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        return {"StatusCode": self.exit_code}

    def logs(self, **kwargs: Any) -> bytes:
        return self.output

    def remove(self, force: bool = False) -> None:
        self.removed = True


@dataclass
class FakeContainers:
    """``probe``: what a KVM probe container prints (a dict), or None when the engine has
    no /dev/kvm (its start fails as Docker's does)."""

    probe: dict[str, Any] | None = None
    created: list[FakeContainer] = field(default_factory=list)

    def create(self, image: str, command: list[str] | None = None, **kwargs: Any) -> FakeContainer:
        container = FakeContainer({"image": image, "command": command, **kwargs})
        if self.probe is None:
            container.start_error = (
                'error gathering device information while adding custom device "/dev/kvm": '
                "no such file or directory"
            )
        else:
            container.output = (json.dumps(self.probe) + "\n").encode()
        self.created.append(container)
        return container


class FakeClient:
    def __init__(
        self,
        architecture: str = "x86_64",
        images: list[FakeImage] | None = None,
        probe: dict[str, Any] | None = None,
        operating_system: str = "Debian GNU/Linux 12 (bookworm)",
    ) -> None:
        self._info = {"Architecture": architecture, "OperatingSystem": operating_system}
        self.images = FakeImages(images or [])
        self.containers = FakeContainers(probe)

    def info(self) -> dict[str, Any]:
        return self._info
