"""The two guest architectures of the seed procedures, as data."""

from __future__ import annotations

from dataclasses import dataclass

from testbed.errors import UserError


@dataclass(frozen=True)
class GuestArch:
    """One guest architecture and how QEMU runs it under TCG."""

    name: str  # armv7 | armv8, the name users type
    qemu_binary: str  # the TCG emulator (KVM always uses qemu-system-aarch64)
    tcg_cpu: str
    uname: str  # what `uname -m` prints in the guest
    max_mem_mb: int  # LPAE armv7 crashes at -m 4096 (measured); 3072 works
    aarch64: bool


ARCHES: dict[str, GuestArch] = {
    "armv7": GuestArch("armv7", "qemu-system-arm", "cortex-a15", "armv7l", 3072, aarch64=False),
    # -cpu max boots 4.5x slower under TCG; cortex-a57 is the seed's kind of core.
    "armv8": GuestArch("armv8", "qemu-system-aarch64", "cortex-a57", "aarch64", 16384, True),
}


def get_arch(name: str) -> GuestArch:
    try:
        return ARCHES[name]
    except KeyError:
        raise UserError(
            f"unknown guest architecture {name!r}", f"use one of {', '.join(ARCHES)}"
        ) from None
