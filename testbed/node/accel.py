"""Choosing the accelerator: KVM where the host can run the guest, TCG everywhere else."""

from __future__ import annotations

import fcntl
import logging
import os
import platform
from dataclasses import dataclass

from testbed.arch import GuestArch
from testbed.errors import UserError

LOG = logging.getLogger(__name__)

KVM_DEVICE = "/dev/kvm"
KVM_CHECK_EXTENSION = 0xAE03  # _IO(KVMIO, 0x03)
KVM_CAP_ARM_EL1_32BIT = 9  # the host CPU runs AArch32 at EL1: 32-bit guests under KVM
ACCELS = ("auto", "tcg", "kvm")


@dataclass(frozen=True)
class HostFacts:
    """What decides whether KVM can run an ARM guest here."""

    machine: str  # platform.machine(): aarch64, x86_64, ...
    kvm_usable: bool  # /dev/kvm exists and opens read-write
    kvm_el1_32bit: bool  # KVM_CAP_ARM_EL1_32BIT


def probe_host(kvm_device: str = KVM_DEVICE) -> HostFacts:
    machine = platform.machine()
    try:
        fd = os.open(kvm_device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        LOG.debug("no KVM: %s: %s", kvm_device, exc)
        return HostFacts(machine, False, False)
    try:
        el1_32bit = (
            machine == "aarch64" and fcntl.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_EL1_32BIT) > 0
        )
    except OSError:
        el1_32bit = False
    finally:
        os.close(fd)
    return HostFacts(machine, True, el1_32bit)


def kvm_refusal(arch: GuestArch, host: HostFacts) -> str | None:
    """Why KVM cannot run this guest on this host, or None when it can."""
    if not host.kvm_usable:
        return f"{KVM_DEVICE} is not available"
    if host.machine != "aarch64":
        return f"KVM on a {host.machine} host cannot run an ARM guest"
    if not arch.aarch64 and not host.kvm_el1_32bit:
        return "this aarch64 host CPU cannot run 32-bit (AArch32) guests under KVM"
    return None


def choose_accel(requested: str, arch: GuestArch, host: HostFacts) -> str:
    """Resolve ``auto|tcg|kvm`` to ``tcg`` or ``kvm`` for this guest on this host."""
    if requested not in ACCELS:
        raise UserError(f"unknown accelerator {requested!r}", f"use one of {', '.join(ACCELS)}")
    if requested == "tcg":
        return "tcg"
    refusal = kvm_refusal(arch, host)
    if requested == "kvm":
        if refusal:
            raise UserError(f"--accel kvm is impossible here: {refusal}", "use --accel auto or tcg")
        return "kvm"
    return "tcg" if refusal else "kvm"
