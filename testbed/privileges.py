"""What each kind of container may do, and why: least privilege, never --privileged,
never host networking.  Every capability, device, sysctl and security option that a
container gets is listed here with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from testbed.seccomp import nfs_server_security_opt


@dataclass(frozen=True)
class Privileges:
    """Docker's default capabilities are dropped; ``cap_add`` is all a container has."""

    cap_add: dict[str, str] = field(default_factory=dict)  # capability -> reason
    devices: dict[str, str] = field(default_factory=dict)  # device -> reason
    sysctls: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (value, reason)
    seccomp_profile: str | None = None  # reason, when not Docker's default profile

    def container_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.create``."""
        security_opt = ["no-new-privileges"]
        if self.seccomp_profile:
            security_opt.append(nfs_server_security_opt())
        kwargs: dict[str, Any] = {
            "cap_drop": ["ALL"],
            "cap_add": sorted(self.cap_add),
            "security_opt": security_opt,
            "devices": [f"{dev}:{dev}:rwm" for dev in self.devices],
        }
        if self.sysctls:
            kwargs["sysctls"] = {key: value for key, (value, _) in self.sysctls.items()}
        return kwargs

    def describe(self) -> list[tuple[str, str]]:
        rows = [(f"cap {cap}", why) for cap, why in self.cap_add.items()]
        rows += [(f"device {dev}", why) for dev, why in self.devices.items()]
        rows += [(f"sysctl {k}={v}", why) for k, (v, why) in self.sysctls.items()]
        if self.seccomp_profile:
            rows.append(("seccomp testbed/seccomp.py", self.seccomp_profile))
        return rows or [("nothing", "no capability, no device, Docker's seccomp profile")]


KVM_DEVICE = "/dev/kvm"
KVM_REASON = "KVM acceleration of the ARM guest (qemu-system-aarch64 -accel kvm)"
RESOLVED_ACCELS = ("tcg", "kvm")

# A throwaway board that boots a TCG guest without a network: QEMU needs nothing.
BOOT = Privileges()

# Gauss A and Gauss B.
BOARD = Privileges(
    cap_add={"NET_ADMIN": "create tap0, set addresses, routes and tc qdiscs (pyroute2)"},
    devices={"/dev/net/tun": "QEMU's tap backend and tap0 creation"},
    sysctls={
        "net.ipv4.ip_forward": (
            "1",
            "route between the lab network and the guest's tap "
            "(/proc/sys is read-only inside the container)",
        )
    },
)

# The NFS server.
NFS = Privileges(
    cap_add={
        "DAC_READ_SEARCH": "open_by_handle_at(2): how nfs-ganesha's VFS FSAL opens files",
        "SETUID": "rpcbind drops to its own user; ganesha takes each client's fs uid",
        "SETGID": "the same, for groups",
        "NET_ADMIN": "the seed's host route to the guest and switch-route (pyroute2)",
    },
    seccomp_profile="Docker 20.10's default profile refuses name_to_handle_at(2), which "
    "the VFS FSAL needs; this deny-list profile allows it and refuses the rest of what "
    "Docker refuses",
)


def with_kvm(base: Privileges) -> Privileges:
    """``base`` plus /dev/kvm as a device: a device, never --privileged, and no
    capability (KVM's ioctls need none; the container's root owns the device node)."""
    return replace(base, devices={**base.devices, KVM_DEVICE: KVM_REASON})


def _for_accel(base: Privileges, accel: str) -> Privileges:
    if accel not in RESOLVED_ACCELS:
        raise ValueError(f"accel must be resolved to tcg or kvm first, got {accel!r}")
    return with_kvm(base) if accel == "kvm" else base


def boot_privileges(accel: str) -> Privileges:
    """A ``testbed boot`` container for a resolved accelerator (platforms.resolve_accel):
    nothing, plus /dev/kvm only for kvm."""
    return _for_accel(BOOT, accel)


def board_privileges(accel: str) -> Privileges:
    """Gauss A / Gauss B for a resolved accelerator: BOARD, plus /dev/kvm only for kvm."""
    return _for_accel(BOARD, accel)
