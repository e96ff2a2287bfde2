#!/bin/sh
# guest-up.sh: last step of the guest's boot, shared by the initramfs and the root disk.
# Configures eth0 from the kernel command line (testbed.ip=ADDR/LEN testbed.gw=GW), prints
# the ready marker the host waits for, and leaves a shell on the serial console.
param() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1="*) echo "${word#*=}"; return;; esac
    done
}
ip_addr=$(param testbed.ip)
gateway=$(param testbed.gw)
net=none
if [ -e /sys/class/net/eth0 ] && [ -n "$ip_addr" ]; then
    ip link set lo up
    ip link set eth0 up
    ip addr add "$ip_addr" dev eth0
    [ -n "$gateway" ] && ip route add default via "$gateway"
    net="eth0=$ip_addr"
fi
root=initramfs
grep -q ' / ext[34] ' /proc/mounts && root=disk
export PS1='guest# '
export PATH=/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
cd /root 2>/dev/null || cd /
# a wide terminal: the shell must not wrap the command lines typed on the console
stty cols 1000 2>/dev/null
echo "TESTBED-READY arch=$(uname -m) kernel=$(uname -r) root=$root net=$net"
exec setsid cttyhack /bin/sh
