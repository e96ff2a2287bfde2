"""Image names per platform, the wrong-platform refusal and the docker-load archive of a
debootstrap base (no engine: a stand-in client and real files)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from testbed import images
from testbed.errors import UserError
from testbed.images import Target, board_image, platform_mismatch, require_image
from testbed.platforms import AMD64, ARM64, PLATFORM_LABEL
from tests.unit.fake_docker import FakeClient, FakeImage

BOARD = "gauss-testbed/qemu-arm:bookworm-backports"


def test_engine_platform_images_keep_the_plain_names() -> None:
    for engine in (AMD64, ARM64):
        target = Target.native(engine)
        assert not target.foreign and target.suffix == ""
        assert target.board() == BOARD == board_image()
        assert target.board("bookworm") == "gauss-testbed/qemu-arm:bookworm"
        assert target.nfs == images.NFS_IMAGE == "gauss-testbed/nfs:latest"
        assert target.base == target.guest_base == "debian:bookworm-slim"
        assert target.build_flags() == ""


def test_foreign_images_carry_the_arch_in_the_tag() -> None:
    arm_on_amd = Target(ARM64, AMD64)
    assert arm_on_amd.foreign
    assert arm_on_amd.board() == f"{BOARD}-arm64"
    assert board_image("bookworm", arm_on_amd) == "gauss-testbed/qemu-arm:bookworm-arm64"
    assert arm_on_amd.nfs == "gauss-testbed/nfs:latest-arm64"
    assert arm_on_amd.base == "arm64v8/debian:bookworm-slim"
    assert arm_on_amd.guest_base == "debian:bookworm-slim"  # the guest stage runs natively
    assert arm_on_amd.build_flags("bookworm") == " --qemu-suite bookworm --platform linux/arm64"
    amd_on_arm = Target(AMD64, ARM64)
    assert amd_on_arm.board() == f"{BOARD}-amd64"
    assert amd_on_arm.base == "amd64/debian:bookworm-slim"


def attrs(arch: str, label: str | None) -> dict[str, object]:
    return FakeImage("x", arch, label).attrs


@pytest.mark.parametrize(
    ("arch", "label", "expected", "problem"),
    [
        ("amd64", "linux/amd64", AMD64, None),
        ("arm64", "linux/arm64", ARM64, None),
        ("amd64", None, AMD64, None),  # built before the label: the engine's own, accepted
        ("amd64", "linux/amd64", ARM64, "is linux/amd64, not linux/arm64"),
        ("arm64", "linux/arm64", AMD64, "is linux/arm64, not linux/amd64"),
        ("amd64", "linux/arm64", AMD64, "is labelled linux/arm64 but is linux/amd64"),
        ("arm64", None, ARM64, "has no io.gauss-testbed.platform label"),  # foreign: no guess
        ("s390x", None, AMD64, "is architecture 's390x', not linux/amd64"),
    ],
)
def test_platform_mismatch(
    arch: str, label: str | None, expected: object, problem: str | None
) -> None:
    found = platform_mismatch("img", attrs(arch, label), expected, AMD64)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_missing_image_names_the_build_command() -> None:
    client = FakeClient("x86_64")
    with pytest.raises(UserError) as info:
        require_image(client, BOARD)
    assert str(info.value) == (f"image {BOARD} is missing: build it with `testbed images build`")
    with pytest.raises(UserError) as info:
        require_image(client, f"{BOARD}-arm64", ARM64)
    assert str(info.value) == (
        f"image {BOARD}-arm64 is missing: build it with "
        "`testbed images build --platform linux/arm64`"
    )
    with pytest.raises(UserError) as info:
        require_image(client, "gauss-testbed/qemu-arm:bookworm-arm64", ARM64)
    assert "`testbed images build --qemu-suite bookworm --platform linux/arm64`" in str(info.value)


def test_wrong_platform_image_is_refused_with_one_line() -> None:
    # an arm64 image under the plain name on an amd64 engine (e.g. docker tag by hand)
    client = FakeClient("x86_64", images=[FakeImage(BOARD, "arm64", "linux/arm64")])
    with pytest.raises(UserError) as info:
        require_image(client, BOARD)
    assert str(info.value) == (
        f"image {BOARD} is linux/arm64, not linux/amd64: run `testbed images build`"
    )


def test_right_platform_image_is_returned() -> None:
    image = FakeImage(f"{BOARD}-arm64", "arm64", "linux/arm64")
    client = FakeClient("x86_64", images=[image])
    assert require_image(client, f"{BOARD}-arm64", ARM64) is image
    arm_engine = FakeClient("aarch64", images=[FakeImage(BOARD, "arm64", "linux/arm64")])
    assert require_image(arm_engine, BOARD).tag == BOARD


def test_a_present_base_of_the_wrong_platform_is_refused() -> None:
    # what `docker import` of an arm64 rootfs makes: it says amd64
    client = FakeClient("x86_64", images=[FakeImage("arm64v8/debian:bookworm-slim", "amd64")])
    with pytest.raises(UserError) as info:
        images.ensure_base_image(client, name="arm64v8/debian:bookworm-slim", platform=ARM64)
    text = str(info.value)
    assert "base image arm64v8/debian:bookworm-slim is linux/amd64, not linux/arm64" in text
    assert "docker rmi arm64v8/debian:bookworm-slim" in text and "\n" not in text


def test_foreign_base_is_pulled_for_its_platform_first(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, object]] = []

    def fake_debootstrap(client: object, name: str, platform: object) -> None:
        made.append((name, platform))

    monkeypatch.setattr(images, "debootstrap_base_image", fake_debootstrap)
    client = FakeClient("x86_64")
    how = images.ensure_base_image(client, name="arm64v8/debian:bookworm-slim", platform=ARM64)
    assert client.images.pulled == [("arm64v8/debian", "bookworm-slim", "linux/arm64")]
    assert how == "debootstrap" and made == [("arm64v8/debian:bookworm-slim", ARM64)]


def test_bases_needed_per_target(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, object]] = []

    def fake_ensure(client: object, allow_pull: bool, *, name: str, platform: object) -> str:
        seen.append((name, platform))
        return "present"

    monkeypatch.setattr(images, "ensure_base_image", fake_ensure)
    found = images.ensure_base_images(None, Target(ARM64, AMD64))
    assert seen == [("debian:bookworm-slim", AMD64), ("arm64v8/debian:bookworm-slim", ARM64)]
    assert found == {"debian:bookworm-slim": "present", "arm64v8/debian:bookworm-slim": "present"}
    seen.clear()
    images.ensure_base_images(None, Target(ARM64, AMD64), only="nfs")
    assert seen == [("arm64v8/debian:bookworm-slim", ARM64)]
    seen.clear()
    images.ensure_base_images(None, Target.native(ARM64))
    assert seen == [("debian:bookworm-slim", ARM64)]


def test_docker_archive_config_names_the_platform() -> None:
    files = images.docker_archive_files(
        "arm64v8/debian:bookworm-slim", ARM64, "sha256:" + "ab" * 32, created="2026-01-01T00:00:00Z"
    )
    manifest = json.loads(files["manifest.json"])
    assert manifest == [
        {
            "Config": manifest[0]["Config"],
            "RepoTags": ["arm64v8/debian:bookworm-slim"],
            "Layers": ["layer/layer.tar"],
        }
    ]
    config_bytes = files[manifest[0]["Config"]]
    assert manifest[0]["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
    config = json.loads(config_bytes)
    assert config["architecture"] == "arm64" and config["os"] == "linux"
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "ab" * 32]}
    assert config["config"]["Labels"] == {PLATFORM_LABEL: "linux/arm64"}
    assert config["config"]["Env"] == [images.BASE_PATH]
    assert config["created"] == "2026-01-01T00:00:00Z"


def test_docker_archive_holds_the_layer_under_its_diff_id(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "debian_version").write_text("12.0\n")
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(str(rootfs), arcname=".")
    archive = images.write_docker_archive(
        layer, "arm64v8/debian:bookworm-slim", ARM64, tmp_path / "image.tar"
    )
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())
        config = json.loads(tar.extractfile(manifest[0]["Config"]).read())
        layer_bytes = tar.extractfile("layer/layer.tar").read()
    assert names == {"manifest.json", manifest[0]["Config"], "layer/layer.tar"}
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]
    assert config["architecture"] == "arm64"
