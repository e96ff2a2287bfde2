"""remove_labelled against a container that a Ctrl-C'd create request makes after the
first listing: dockerd refuses the volume ("in use") until that container is removed too.
The engine's answers are played by a stand-in; the retry decision is the product's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import docker
import docker.errors
import pytest
import requests

from testbed.cleanup import remove_labelled


def in_use(what: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = 409
    return docker.errors.APIError(f"{what} is in use", response, explanation=f"{what} is in use")


@dataclass
class Engine:
    """A late container: it appears in listings only from ``late_after`` listings on."""

    late_after: int
    listings: int = 0
    late_removed: bool = False
    removed: list[str] = field(default_factory=list)


@dataclass
class Thing:
    engine: Engine
    name: str
    late: bool = False

    def remove(self, **_: Any) -> None:
        if self.name == "export" and not self.engine.late_removed:
            raise in_use("remove export: volume")
        if self.late:
            self.engine.late_removed = True
        self.engine.removed.append(self.name)


class Listing:
    def __init__(self, engine: Engine, kind: str) -> None:
        self.engine, self.kind = engine, kind

    def list(self, **_: Any) -> list[Thing]:
        if self.kind == "containers":
            self.engine.listings += 1
            if self.engine.listings > self.engine.late_after and not self.engine.late_removed:
                return [Thing(self.engine, "nfs", late=True)]
            return []
        if self.kind == "volumes":
            return [] if "export" in self.engine.removed else [Thing(self.engine, "export")]
        return []


class Client:
    def __init__(self, engine: Engine) -> None:
        self.containers = Listing(engine, "containers")
        self.networks = Listing(engine, "networks")
        self.volumes = Listing(engine, "volumes")


def test_a_container_created_after_the_listing_is_removed_and_then_its_volume() -> None:
    engine = Engine(late_after=1)
    removed = remove_labelled(cast(docker.DockerClient, Client(engine)), lab="x", settle_s=5)
    assert removed.containers == ["nfs"] and removed.volumes == ["export"]


def test_a_volume_that_stays_in_use_ends_in_dockers_error() -> None:
    engine = Engine(late_after=10**6)  # the holder never shows up
    with pytest.raises(docker.errors.APIError, match="in use"):
        remove_labelled(cast(docker.DockerClient, Client(engine)), lab="x", settle_s=0.3)
