#!/bin/sh
# Start rpcbind, then nfs-ganesha in the foreground logging to stdout.  The lab waits for
# "NFS SERVER INITIALIZED" in the container log.
set -eu
mkdir -p /srv/mnt /run/rpcbind /var/run/ganesha /var/lib/nfs/ganesha
rpcbind -w
exec ganesha.nfsd -F -L /dev/stdout -f /etc/ganesha/ganesha.conf -N NIV_EVENT
