"""QEMU command lines: TCG here, KVM where the host allows it (built, not run, here)."""

from __future__ import annotations

import pytest

from testbed.arch import get_arch
from testbed.node.cmdline import (
    Disk,
    GuestConfig,
    Nic,
    SharedMemory,
    build_command,
    kernel_append,
)


def config(arch: str = "armv8", accel: str = "tcg", **kw: object) -> GuestConfig:
    return GuestConfig(
        arch=get_arch(arch),
        accel=accel,
        kernel="/g/kernel",
        initrd="/g/initrd.img",
        serial_socket="/w/serial.sock",
        serial_log="/w/serial.log",
        qmp_socket="/w/qmp.sock",
        **kw,  # type: ignore[arg-type]
    )


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_tcg_armv7_uses_qemu_system_arm_cortex_a15() -> None:
    argv = build_command(config("armv7"))
    assert argv[0] == "qemu-system-arm"
    assert value_after(argv, "-machine") == "virt"
    assert value_after(argv, "-accel") == "tcg"
    assert value_after(argv, "-cpu") == "cortex-a15"


def test_tcg_armv8_uses_qemu_system_aarch64_cortex_a57() -> None:
    argv = build_command(config("armv8"))
    assert argv[0] == "qemu-system-aarch64"
    assert value_after(argv, "-cpu") == "cortex-a57"


def test_kvm_armv8_runs_host_cpu_with_host_gic() -> None:
    argv = build_command(config("armv8", "kvm"))
    assert argv[:7] == [
        "qemu-system-aarch64",
        "-machine",
        "virt,gic-version=host",
        "-accel",
        "kvm",
        "-cpu",
        "host",
    ]


def test_kvm_armv7_runs_aarch32_on_the_aarch64_binary() -> None:
    argv = build_command(config("armv7", "kvm"))
    assert argv[0] == "qemu-system-aarch64"
    assert value_after(argv, "-accel") == "kvm"
    assert value_after(argv, "-cpu") == "host,aarch64=off"


def test_unresolved_accel_is_refused() -> None:
    with pytest.raises(ValueError):
        build_command(config(accel="auto"))


def test_nothing_implicit_and_no_user_mode_network() -> None:
    argv = build_command(config())
    assert "-nodefaults" in argv and value_after(argv, "-display") == "none"
    assert value_after(argv, "-nic") == "none"
    assert not any("user" in a.split(",")[0] for a in argv if a.startswith(("user", "-nic")))


def test_memory_smp_and_console() -> None:
    argv = build_command(config(mem_mb=2048, smp=2))
    assert value_after(argv, "-m") == "2048" and value_after(argv, "-smp") == "2"
    chardev = value_after(argv, "-chardev")
    assert chardev.startswith("socket,id=serial0,path=/w/serial.sock,server=on,wait=on")
    assert "logfile=/w/serial.log" in chardev
    assert value_after(argv, "-serial") == "chardev:serial0"
    assert value_after(argv, "-qmp") == "unix:/w/qmp.sock,server=on,wait=off"
    assert "-monitor" not in argv


def test_tap_nic_disk_incoming_and_paused() -> None:
    argv = build_command(
        config(
            nic=Nic("tap0", "52:54:00:aa:bb:cc"),
            disk=Disk("nfs://192.168.10.10/srv/mnt/d.img"),
            incoming="tcp:0:4321",
            start_paused=True,
            monitor_socket="/w/hmp.sock",
            guest_ip="192.168.2.100/24",
            guest_gateway="192.168.2.1",
        )
    )
    assert value_after(argv, "-netdev") == "tap,id=net0,ifname=tap0,script=no,downscript=no"
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc,romfile=" in argv
    assert value_after(argv, "-drive") == (
        "file=nfs://192.168.10.10/srv/mnt/d.img,if=none,format=raw,id=disk0"
    )
    assert "virtio-blk-pci,drive=disk0" in argv
    assert "-S" in argv and value_after(argv, "-incoming") == "tcp:0:4321"
    assert value_after(argv, "-monitor") == "unix:/w/hmp.sock,server=on,wait=off"
    assert "-nic" not in argv
    append = value_after(argv, "-append")
    assert append == (
        "console=ttyAMA0 panic=-1 cryptomgr.notests testbed.ip=192.168.2.100/24 "
        "testbed.gw=192.168.2.1 testbed.root=/dev/vda"
    )


def test_plain_append() -> None:
    assert kernel_append(config()) == "console=ttyAMA0 panic=-1 cryptomgr.notests"


def test_crypto_selftests_run_only_when_asked_for() -> None:
    assert "cryptomgr.notests" not in kernel_append(config(crypto_selftests=True)).split()


def test_shared_memory_device_after_main_ram() -> None:
    argv = build_command(config(shm=SharedMemory("/dev/shm/aeshmem", "1M"), mem_mb=512))
    objects = [argv[i + 1] for i, a in enumerate(argv) if a == "-object"]
    # main RAM is created first, so the shared block is not first in RAM order
    assert objects == [
        "memory-backend-ram,id=mainram,size=512M",
        "memory-backend-file,id=shm,mem-path=/dev/shm/aeshmem,size=1M,share=on",
    ]
    assert value_after(argv, "-machine") == "virt,memory-backend=mainram"
    assert "ivshmem-plain,memdev=shm,master=on" in argv  # master=on: migratable


def test_shared_memory_first_in_ram_order_on_request() -> None:
    argv = build_command(config(shm=SharedMemory(first=True)))
    assert value_after(argv, "-machine") == "virt"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-object"] == [
        "memory-backend-file,id=shm,mem-path=/dev/shm/aeshmem,size=1M,share=on"
    ]
