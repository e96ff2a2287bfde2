#!/bin/sh
# writeout.sh: the seed's console heartbeat. Prints the time every second on the console
# and appends the same line to a log on the root disk, so that after a migration both the
# destination's console and the disk show whether time went on and how long the pause was.
# Line format: "writeout: EPOCH_SECONDS YYYY-MM-DD HH:MM:SS"
LOG=${WRITEOUT_LOG:-/var/log/writeout.log}
mkdir -p "$(dirname "$LOG")" 2>/dev/null
while :; do
    line="writeout: $(date '+%s %Y-%m-%d %H:%M:%S')"
    echo "$line"
    echo "$line" >> "$LOG"
    sleep 1
done
