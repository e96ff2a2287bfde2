#!/bin/sh
# build-guest.sh ARCH OUTDIR
#
# Builds the guest side of one architecture (armv7 or armv8) from Debian packages, without
# installing any foreign-architecture package: the kernel and busybox-static are fetched
# with "apt-get download" and unpacked with dpkg-deb.  Runs in the "guest" stage of
# Dockerfile.qemu-arm, which provides the cross compilers, kmod, cpio and e2fsprogs.
#
# OUTDIR/ARCH receives:
#   kernel          the Debian kernel (zImage for armv7, Image for armv8)
#   initrd.img      busybox initramfs: modules, eth0 setup, ready marker, serial shell
#   rootfs.ext3     ext3 root disk (mke2fs -d, no loop mount) with busybox and the programs
#   bin/            the static guest programs (dirtyram, tstaeshm) and writeout.sh
#   manifest.json   what was built from which package versions
set -eu

arch=$1
out=$2/$arch
here=$(cd "$(dirname "$0")" && pwd)
src=$here/guest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case "$arch" in
armv7)
    debarch=armhf
    kflavour=armmp-lpae
    # the cross compiler on every build host (amd64 and arm64 engines)
    cc="arm-linux-gnueabihf-gcc -D_FILE_OFFSET_BITS=64"
    ;;
armv8)
    debarch=arm64
    kflavour=arm64
    # native gcc where the build host is arm64 itself, the cross compiler elsewhere
    # (Dockerfile.qemu-arm installs the same choice)
    if [ "$(dpkg --print-architecture)" = arm64 ]; then
        cc="gcc"
    else
        cc="aarch64-linux-gnu-gcc"
    fi
    ;;
*)
    echo "build-guest.sh: unknown arch '$arch' (armv7 or armv8)" >&2
    exit 2
    ;;
esac

# The kernel metapackage names the current ABI's image package.
kpkg=$(apt-cache depends "linux-image-$kflavour:$debarch" |
    sed -n "s/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p" | head -n 1)
[ -n "$kpkg" ] || { echo "build-guest.sh: no kernel package for $kflavour:$debarch" >&2; exit 1; }
echo "build-guest.sh: $arch: kernel package $kpkg:$debarch"

cd "$work"
apt-get download "$kpkg:$debarch" "busybox-static:$debarch"
dpkg-deb -x "$(ls ${kpkg}_*.deb)" pkg
dpkg-deb -x "$(ls busybox-static_*.deb)" pkg
kver=${kpkg#linux-image-}
kver_pkg=$(dpkg-deb -f "$(ls ${kpkg}_*.deb)" Version)
bb_pkg=$(dpkg-deb -f "$(ls busybox-static_*.deb)" Version)

mkdir -p "$out/bin"
cp "pkg/boot/vmlinuz-$kver" "$out/kernel"

# Static guest programs, from the same sources the host-side unit tests compile.
$cc -static -O2 -Wall -Wextra -Werror -o "$out/bin/tbload" "$src/tbload.c"
cp "$out/bin/tbload" "$out/bin/dirtyram" # tbload's seed mode in dirtyram's own format
$cc -static -O2 -Wall -Wextra -Werror -o "$out/bin/tstaeshm" "$src/tstaeshm.c"
cp "$src/writeout.sh" "$out/bin/writeout.sh"

# Modules for virtio (mmio and pci), net, blk and ext3 with their dependencies, in the
# order modprobe would load them, one list per group: the initramfs loads a group only
# when its device exists.  The .deb has no modules.dep: depmod makes one.
depmod -b pkg "$kver"
module_group() { # GROUP MODULE...
    group=$1
    shift
    modprobe -d pkg -S "$kver" --show-depends -a "$@" |
        sed -n "s#^insmod $work/pkg/lib/modules/$kver/\([^ ]*\).*#\1#p" |
        awk '!seen[$0]++' > "modules.$group"
    cat "modules.$group" >> modules.all
}
: > modules.all
module_group virtio virtio_mmio virtio_pci
module_group net virtio_net
module_group blk virtio_blk
module_group ext3 ext4

# Common skeleton of the initramfs and the root disk.
skeleton() {
    mkdir -p "$1/bin" "$1/sbin" "$1/usr/bin" "$1/usr/sbin" "$1/usr/local/bin" \
        "$1/proc" "$1/sys" "$1/dev" "$1/tmp" "$1/root" "$1/var/log" "$1/etc" "$1/newroot"
    cp pkg/bin/busybox "$1/bin/busybox"
    ln -sf busybox "$1/bin/sh"
    cp "$src/guest-up.sh" "$1/sbin/guest-up.sh"
    cp "$out/bin/tbload" "$out/bin/dirtyram" "$out/bin/tstaeshm" "$out/bin/writeout.sh" \
        "$1/usr/local/bin/"
    echo "root:x:0:0:root:/root:/bin/sh" > "$1/etc/passwd"
    echo "root:x:0:" > "$1/etc/group"
}

# initramfs
skeleton initramfs
cp "$src/init" initramfs/init
sort -u modules.all | while read -r module; do
    mkdir -p "initramfs/lib/modules/$(dirname "$module")"
    cp "pkg/lib/modules/$kver/$module" "initramfs/lib/modules/$module"
done
cp modules.virtio modules.net modules.blk modules.ext3 initramfs/lib/modules/
(cd initramfs && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$out/initrd.img"

# ext3 root disk, made from a directory without a loop mount
skeleton rootfs
rmdir rootfs/newroot
cp "$src/rootfs-init" rootfs/sbin/init
mke2fs -q -t ext3 -L testbed-root -d rootfs "$out/rootfs.ext3" 64M

sha() { sha256sum "$1" | cut -d' ' -f1; }
cat > "$out/manifest.json" <<JSON
{
  "arch": "$arch",
  "debian_arch": "$debarch",
  "kernel_package": "$kpkg",
  "kernel_package_version": "$kver_pkg",
  "kernel_release": "$kver",
  "busybox_version": "$bb_pkg",
  "modules": [$(sort -u modules.all | sed 's/.*/"&"/' | paste -sd, -)],
  "files": {
    "kernel": "$(sha "$out/kernel")",
    "initrd.img": "$(sha "$out/initrd.img")",
    "rootfs.ext3": "$(sha "$out/rootfs.ext3")"
  }
}
JSON
echo "build-guest.sh: $arch done: $(du -sh "$out" | cut -f1) in $out"
