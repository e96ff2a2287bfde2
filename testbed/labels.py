"""Labels on everything the testbed creates, so that cleanup can find it all."""

from __future__ import annotations

PROJECT = "io.gauss-testbed"  # present on every object: "1"
KIND = "io.gauss-testbed.kind"  # boot | node | network | volume
LAB = "io.gauss-testbed.lab"  # the lab's name (labs can coexist)
ROLE = "io.gauss-testbed.role"  # board | nfs (also set on images)
QEMU_VERSION = "io.gauss-testbed.qemu-version"
QEMU_SUITE = "io.gauss-testbed.qemu-suite"
# on images: the digest of what they were built from (testbed.image_inputs)
INPUTS = "io.gauss-testbed.inputs"


def for_object(kind: str, lab: str | None = None, **extra: str) -> dict[str, str]:
    labels = {PROJECT: "1", KIND: kind}
    if lab:
        labels[LAB] = lab
    labels.update(extra)
    return labels


def project_filter(**match: str) -> dict[str, str | list[str] | bool]:
    """A Docker API ``filters`` value selecting testbed objects with these labels."""
    wanted = [f"{PROJECT}=1"] + [f"{key}={value}" for key, value in match.items()]
    return {"label": wanted}
