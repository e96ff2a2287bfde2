"""The NFS server image serves a disk image to QEMU's own NFS client (libnfs, NFSv3),
with the documented privileges; and without the seccomp change it cannot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import docker
import pytest
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from testbed import labels
from testbed.cleanup import remove_labelled
from testbed.errors import UserError
from testbed.nfs import NfsServerSpec, create_nfs_server, wait_ready
from testbed.privileges import NFS

pytestmark = pytest.mark.integration
# what no_leaks checks: this module's own objects (a lab of the user's or another xdist
# worker's may be up meanwhile)
NO_LEAKS_OF = [{labels.LAB: "test-nfs"}]

SUBNET = "192.168.210.0/24"  # a test-only subnet, distinct from a running lab's
SERVER = "192.168.210.10"


@pytest.fixture()
def nfs_spec(
    docker_client: docker.DockerClient, built_images: dict[str, str], no_leaks: None
) -> Iterator[NfsServerSpec]:
    tag = labels.for_object("network", lab="test-nfs")
    network = docker_client.networks.create(
        "testbed-test-nfs",
        driver="bridge",
        labels=tag,
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET)]),
    )
    volume = docker_client.volumes.create(
        "testbed-test-nfs-export", labels=labels.for_object("volume", lab="test-nfs")
    )
    spec = NfsServerSpec(
        "testbed-test-nfs-server",
        network.name,
        SERVER,
        volume.name,
        labels.for_object("node", lab="test-nfs"),
    )
    yield spec
    remove_labelled(docker_client, lab="test-nfs")


def qemu_img(client: docker.DockerClient, board: str, network: str, script: str) -> str:
    """QEMU's own NFS client in a throwaway board container (testcontainers)."""
    # Ryuk, testcontainers' reaper, is an image from a registry this machine cannot reach;
    # the testbed's labels and the no_leaks fixture do its job here.
    testcontainers_config.ryuk_disabled = True
    container = (
        DockerContainer(board)
        .with_command(["sh", "-c", script])
        .with_kwargs(
            network=network, cap_drop=["ALL"], labels=labels.for_object("test", lab="test-nfs")
        )
    )
    with container:
        wrapped = container.get_wrapped_container()
        status = wrapped.wait(timeout=120)
        out = wrapped.logs(stdout=True, stderr=True).decode()
    assert status["StatusCode"] == 0, out
    return out


def test_qemu_reads_and_writes_an_image_over_nfs(
    docker_client: docker.DockerClient, built_images: dict[str, str], nfs_spec: NfsServerSpec
) -> None:
    server = create_nfs_server(docker_client, nfs_spec)
    server.start()
    assert wait_ready(server) < 30
    url = f"nfs://{SERVER}/srv/mnt/probe.img"
    out = qemu_img(
        docker_client,
        built_images["board"],
        nfs_spec.network,
        (
            f"qemu-img create -f raw {url} 8M >/dev/null && "
            f"qemu-io -f raw -c 'write -P 0x5a 1M 64k' {url} >/dev/null && "
            f"qemu-io -f raw -c 'read -P 0x5a 1M 64k' {url} && qemu-img info {url}"
        ),
    )
    assert "read 65536/65536 bytes" in out and "virtual size: 8 MiB" in out, out
    # the bytes landed in the exported volume, as the server sees it
    exit_code, listing = server.exec_run(["stat", "-c", "%s", "/srv/mnt/probe.img"])
    assert exit_code == 0 and listing.decode().strip() == str(8 << 20)


def test_default_seccomp_profile_breaks_the_export(
    docker_client: docker.DockerClient, built_images: dict[str, str], nfs_spec: NfsServerSpec
) -> None:
    """Negative control: the same server under Docker's default seccomp profile."""
    spec = replace(nfs_spec, privileges=replace(NFS, seccomp_profile=None))
    server = create_nfs_server(docker_client, spec)
    server.start()
    with pytest.raises(UserError, match="cannot export /srv/mnt") as info:
        wait_ready(server, timeout=30)
    assert "Could not get handle for path /srv/mnt" in str(info.value)
    assert "\n" not in str(info.value)
