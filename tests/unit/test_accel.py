"""auto|tcg|kvm resolution from host facts (pure logic)."""

from __future__ import annotations

import pytest

from testbed.arch import get_arch
from testbed.errors import UserError
from testbed.node.accel import HostFacts, choose_accel, probe_host

X86_WITH_KVM = HostFacts("x86_64", kvm_usable=True, kvm_el1_32bit=False)
ARM_WITH_KVM = HostFacts("aarch64", kvm_usable=True, kvm_el1_32bit=True)
ARM_NO_AARCH32 = HostFacts("aarch64", kvm_usable=True, kvm_el1_32bit=False)
ARM_NO_KVM = HostFacts("aarch64", kvm_usable=False, kvm_el1_32bit=False)


@pytest.mark.parametrize(
    ("arch", "host", "expected"),
    [
        ("armv8", X86_WITH_KVM, "tcg"),  # x86 KVM cannot run ARM guests
        ("armv7", X86_WITH_KVM, "tcg"),
        ("armv8", ARM_WITH_KVM, "kvm"),
        ("armv7", ARM_WITH_KVM, "kvm"),
        ("armv8", ARM_NO_AARCH32, "kvm"),
        ("armv7", ARM_NO_AARCH32, "tcg"),  # no AArch32 at EL1
        ("armv8", ARM_NO_KVM, "tcg"),
    ],
)
def test_auto(arch: str, host: HostFacts, expected: str) -> None:
    assert choose_accel("auto", get_arch(arch), host) == expected


def test_tcg_is_always_possible() -> None:
    assert choose_accel("tcg", get_arch("armv7"), ARM_WITH_KVM) == "tcg"


@pytest.mark.parametrize(
    ("arch", "host", "reason"),
    [
        ("armv8", X86_WITH_KVM, "x86_64 host cannot run an ARM guest"),
        ("armv7", ARM_NO_AARCH32, "cannot run 32-bit"),
        ("armv8", ARM_NO_KVM, "/dev/kvm is not available"),
    ],
)
def test_kvm_refused_with_reason(arch: str, host: HostFacts, reason: str) -> None:
    with pytest.raises(UserError, match=reason) as info:
        choose_accel("kvm", get_arch(arch), host)
    assert "\n" not in str(info.value) and "--accel auto or tcg" in str(info.value)


def test_kvm_accepted_where_possible() -> None:
    assert choose_accel("kvm", get_arch("armv7"), ARM_WITH_KVM) == "kvm"


def test_unknown_accel() -> None:
    with pytest.raises(UserError, match="unknown accelerator 'hvf'"):
        choose_accel("hvf", get_arch("armv8"), ARM_WITH_KVM)


def test_probe_without_kvm_device(tmp_path: object) -> None:
    facts = probe_host(kvm_device="/nonexistent/kvm")
    assert facts.kvm_usable is False and facts.kvm_el1_32bit is False and facts.machine
