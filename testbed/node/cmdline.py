"""QEMU command lines for the testbed's guests (pure logic, unit-tested)."""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.arch import GuestArch

KVM_BINARY = "qemu-system-aarch64"  # KVM runs both arches through the aarch64 binary
SERIAL_ID = "serial0"


@dataclass(frozen=True)
class Nic:
    """A virtio NIC on a host tap device."""

    tap: str = "tap0"
    mac: str = "52:54:00:12:34:56"


@dataclass(frozen=True)
class Disk:
    """The guest's root disk: a file path or an nfs:// URL that QEMU opens itself."""

    path: str
    format: str = "raw"


@dataclass(frozen=True)
class SharedMemory:
    """An ivshmem-plain device whose memory is a host file (the seed's /dev/shm/aeshmem).
    master=on: without it QEMU refuses to migrate the device."""

    path: str = "/dev/shm/aeshmem"
    size: str = "1M"
    # QEMU 10.0.2 under TCG aborts (tlb_reset_dirty_range_all assertion) while tracking
    # dirty pages when the shared block is first in RAM order, which it is when it is
    # the first memory backend created.  By default the guest's main RAM is made an
    # explicit backend created before it; first=True reproduces the abort.
    first: bool = False


MAIN_RAM_ID = "mainram"


@dataclass(frozen=True)
class GuestConfig:
    arch: GuestArch
    accel: str  # tcg | kvm (resolved, see accel.choose_accel)
    kernel: str
    initrd: str
    serial_socket: str
    serial_log: str
    qmp_socket: str
    monitor_socket: str | None = None
    # a second QMP monitor for a long-lived client (the replication daemon), since a QMP
    # socket serves one client at a time
    service_qmp_socket: str | None = None
    mem_mb: int = 512
    smp: int = 1
    nic: Nic | None = None
    guest_ip: str | None = None  # "192.168.2.100/24"
    guest_gateway: str | None = None
    disk: Disk | None = None
    shm: SharedMemory | None = None
    incoming: str | None = None  # e.g. "tcp:0:4321"
    start_paused: bool = False  # -S
    # wait=on: QEMU starts the guest only once a client is attached (a one-shot boot,
    # nothing lost); wait=off: a long-lived lab VM, the log file keeps what nobody read
    serial_wait: bool = True
    gdb_port: int | None = None  # -gdb tcp::PORT (the negative controls write memory there)
    # The guest kernel's crypto self-tests (crypto_algapi_init) take 1.5 s of an armv7
    # boot and 0.5 s of an armv8 boot under TCG (initcall_debug); they test nothing this
    # testbed observes, so they are off (cryptomgr.notests) unless asked for.
    crypto_selftests: bool = False
    extra_append: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def kernel_append(cfg: GuestConfig) -> str:
    words = ["console=ttyAMA0", "panic=-1"]
    if not cfg.crypto_selftests:
        words.append("cryptomgr.notests")
    if cfg.guest_ip:
        words.append(f"testbed.ip={cfg.guest_ip}")
    if cfg.guest_gateway:
        words.append(f"testbed.gw={cfg.guest_gateway}")
    if cfg.disk:
        words.append("testbed.root=/dev/vda")
    words.extend(cfg.extra_append)
    return " ".join(words)


def machine_args(cfg: GuestConfig) -> list[str]:
    """Binary, machine, accelerator and CPU.

    Under KVM the guest gets the host's own CPU and GIC, through qemu-system-aarch64 for
    both arches: ``-cpu host`` for armv8, ``-cpu host,aarch64=off`` for armv7 (QEMU accepts
    aarch64=off only with KVM on a host with KVM_CAP_ARM_EL1_32BIT, which the accelerator
    resolution checks first: accel.choose_accel on the node, platforms.resolve_accel on
    the host)."""
    if cfg.accel == "kvm":
        cpu = "host" if cfg.arch.aarch64 else "host,aarch64=off"
        return [KVM_BINARY, "-machine", "virt,gic-version=host", "-accel", "kvm", "-cpu", cpu]
    if cfg.accel == "tcg":
        return [cfg.arch.qemu_binary, "-machine", "virt", "-accel", "tcg", "-cpu", cfg.arch.tcg_cpu]
    raise ValueError(f"accel must be resolved to tcg or kvm, got {cfg.accel!r}")


def build_command(cfg: GuestConfig) -> list[str]:
    """The whole QEMU argv.  Nothing implicit: -nodefaults, no display, no user-mode NIC
    (nothing may leave the lab), the serial console on a unix socket with a log file, QMP
    and optionally HMP on unix sockets."""
    argv = machine_args(cfg)
    argv += ["-m", str(cfg.mem_mb), "-smp", str(cfg.smp)]
    if cfg.shm and not cfg.shm.first:
        machine = argv.index("-machine") + 1
        argv[machine] += f",memory-backend={MAIN_RAM_ID}"
        argv += ["-object", f"memory-backend-ram,id={MAIN_RAM_ID},size={cfg.mem_mb}M"]
    argv += ["-nodefaults", "-display", "none", "-no-reboot"]
    argv += ["-kernel", cfg.kernel, "-initrd", cfg.initrd, "-append", kernel_append(cfg)]
    wait = "on" if cfg.serial_wait else "off"
    argv += [
        "-chardev",
        f"socket,id={SERIAL_ID},path={cfg.serial_socket},server=on,wait={wait},"
        f"logfile={cfg.serial_log},logappend=on",
        "-serial",
        f"chardev:{SERIAL_ID}",
    ]
    argv += ["-qmp", f"unix:{cfg.qmp_socket},server=on,wait=off"]
    if cfg.service_qmp_socket:
        argv += ["-qmp", f"unix:{cfg.service_qmp_socket},server=on,wait=off"]
    if cfg.monitor_socket:
        argv += ["-monitor", f"unix:{cfg.monitor_socket},server=on,wait=off"]
    if cfg.nic:
        argv += [
            "-netdev",
            f"tap,id=net0,ifname={cfg.nic.tap},script=no,downscript=no",
            # romfile= : no option ROM (nothing network-boots; the ROM package is optional)
            "-device",
            f"virtio-net-pci,netdev=net0,mac={cfg.nic.mac},romfile=",
        ]
    else:
        argv += ["-nic", "none"]
    if cfg.disk:
        argv += [
            "-drive",
            f"file={cfg.disk.path},if=none,format={cfg.disk.format},id=disk0",
            "-device",
            "virtio-blk-pci,drive=disk0",
        ]
    if cfg.shm:
        argv += [
            "-object",
            f"memory-backend-file,id=shm,mem-path={cfg.shm.path},size={cfg.shm.size},share=on",
            "-device",
            "ivshmem-plain,memdev=shm,master=on",
        ]
    if cfg.gdb_port is not None:
        argv += ["-gdb", f"tcp:127.0.0.1:{cfg.gdb_port}"]
    if cfg.start_paused:
        argv.append("-S")
    if cfg.incoming:
        argv += ["-incoming", cfg.incoming]
    argv += list(cfg.extra_args)
    return argv
