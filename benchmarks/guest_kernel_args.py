"""Benchmark of the guest kernel's command line: boot to the ready marker with the crypto
self-tests on (the kernel's default) and off (``cryptomgr.notests``, the testbed's default).

    python benchmarks/guest_kernel_args.py [--runs 5] [--json FILE]

Both variants run in one board container, alternating (on, off, on, off, ...) so that a
change of the machine's load hits both alike.  Each boot is the product's own QEMU command
line (``testbed.node.cmdline``) for the initramfs guest, timed from QEMU's start to the
ready marker on the serial console; the median, min and max of each are printed."""

from __future__ import annotations

import argparse
import sys

import docker
from medians import report, summary

from testbed import images, labels

# Runs inside the board container with the image's node code: one boot of the arch and
# variant given; its seconds to the ready marker on stdout.
BOOT_SCRIPT = r"""
import subprocess, sys, tempfile, time
from pathlib import Path
from testbed.arch import get_arch
from testbed.node.cmdline import GuestConfig, build_command
from testbed.node.guest import GuestArtifacts

arch, selftests = sys.argv[1], sys.argv[2] == "on"
art = GuestArtifacts.for_arch(get_arch(arch))
work = Path(tempfile.mkdtemp())
cfg = GuestConfig(arch=get_arch(arch), accel="tcg", kernel=str(art.kernel),
                  initrd=str(art.initrd), serial_socket=str(work / "s.sock"),
                  serial_log=str(work / "s.log"), qmp_socket=str(work / "q.sock"),
                  crypto_selftests=selftests)
argv = build_command(cfg)
# the serial console on stdout instead of a socket: nothing else differs
i = argv.index("-chardev")
del argv[i:i + 4]
argv += ["-serial", "stdio"]
started = time.monotonic()
qemu = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
assert qemu.stdout is not None
for line in qemu.stdout:
    if b"TESTBED-READY" in line:
        print(round(time.monotonic() - started, 3))
        break
else:
    sys.exit("QEMU ended before the guest was ready")
qemu.kill()
qemu.wait()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    client = docker.from_env()
    board = images.board_image(images.DEFAULT_SUITE)
    container = client.containers.run(
        board,
        ["sleep", "infinity"],
        detach=True,
        network_mode="none",
        labels={labels.PROJECT: "1", labels.KIND: "boot"},
    )
    samples: dict[str, list[float]] = {}
    try:
        for arch in ("armv7", "armv8"):
            for _ in range(args.runs):
                for variant in ("on", "off"):
                    code, out = container.exec_run(
                        ["python3", "-c", BOOT_SCRIPT, arch, variant], demux=False
                    )
                    text = out.decode().strip()
                    if code != 0:
                        sys.exit(f"boot {arch} self-tests {variant} failed: {text}")
                    seconds = float(text.splitlines()[-1])
                    samples.setdefault(f"{arch} self-tests {variant}", []).append(seconds)
                    print(f"{arch} self-tests {variant:<3} {seconds:6.3f} s", flush=True)
    finally:
        container.remove(force=True)
    results = {name: summary(values) for name, values in samples.items()}
    print()
    report(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
