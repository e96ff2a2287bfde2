"""The seccomp profile of the NFS server container.

nfs-ganesha's VFS FSAL identifies files by kernel file handles: name_to_handle_at(2) and
open_by_handle_at(2).  Docker 20.10's default profile refuses name_to_handle_at, and the
Docker API offers no way to extend the default profile (only to replace it), so the
server gets this profile instead of ``seccomp=unconfined``:

* every syscall is allowed except the ones below, which are refused with EPERM: the
  groups that Docker's default profile refuses to an unprivileged container (kernel
  modules, kexec, mounts and namespaces, ptrace and cross-process memory, bpf and perf,
  keyrings, clock setting, swap, reboot, userfaultfd, io ports, obsolete calls);
* clone(2) may not create namespaces, and clone3 answers ENOSYS so that libc falls back
  to clone(2), as in Docker's profile;
* name_to_handle_at and open_by_handle_at are *not* in the refused list; the kernel still
  requires CAP_DAC_READ_SEARCH for open_by_handle_at, the one capability the server adds.

This is a deny list, so a syscall Docker would refuse but that is missing here is allowed:
a documented trade-off against shipping a copy of Docker's 800-line allow list.
"""

from __future__ import annotations

import json
from typing import Any

EPERM = 1
ENOSYS = 38

REFUSED_SYSCALLS: tuple[str, ...] = (
    # kernel modules and kexec
    "create_module",
    "init_module",
    "finit_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "kexec_load",
    "kexec_file_load",
    # mounts, namespaces, root changes
    "mount",
    "umount",
    "umount2",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pivot_root",
    "unshare",
    "setns",
    # other processes' memory, tracing, bpf, perf
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "bpf",
    "perf_event_open",
    "lookup_dcookie",
    "userfaultfd",
    # keyrings
    "add_key",
    "request_key",
    "keyctl",
    # clocks
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    # machine state
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
    "syslog",
    # obsolete or NUMA-policy calls Docker refuses without CAP_SYS_NICE
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "mbind",
    "set_mempolicy",
    "move_pages",
)

# clone(2) flags that create namespaces; each is refused on its own.
CLONE_NAMESPACE_FLAGS: tuple[int, ...] = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

ARCHITECTURES = (
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
)


def nfs_server_profile() -> dict[str, Any]:
    syscalls: list[dict[str, Any]] = [
        {"names": list(REFUSED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
    ]
    for flag in CLONE_NAMESPACE_FLAGS:
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(ARCHITECTURES),
        "syscalls": syscalls,
    }


def nfs_server_security_opt() -> str:
    """The ``security_opt`` entry for the Docker API (the profile's JSON inline)."""
    return "seccomp=" + json.dumps(nfs_server_profile(), separators=(",", ":"))
