#!/bin/sh
# Stops the zfs-fuse daemon started by zfs-fuse-up.sh, by its pid, and waits for
# the pid to vanish (the daemon takes a few seconds to exit after SIGTERM, and a
# new one started meanwhile would exit silently). A daemon that ignores SIGTERM
# for TIMEOUT seconds (a hung one) gets SIGKILL; its FUSE mounts are then dead
# and are unmounted lazily.
set -eu

PIDFILE=${ZFS_FUSE_PIDFILE:-/run/zfs-fuse.pid}
LOCKFILE=${ZFS_FUSE_LOCKFILE:-/run/zfs-fuse-up.lock}
TIMEOUT=${ZFS_FUSE_TIMEOUT:-30}

# True while $1 is a live zfs-fuse (not a zombie, not a reused pid).
alive() {
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    case "$stat" in
        *"(zfs-fuse) Z"*) return 1 ;;
        *"(zfs-fuse) "*) return 0 ;;
        *) return 1 ;;
    esac
}

# Waits up to TIMEOUT seconds for pid $1 to go; false if it is still there.
wait_gone() {
    waited=0
    while alive "$1"; do
        [ "$waited" -ge $((TIMEOUT * 10)) ] && return 1
        sleep 0.1
        waited=$((waited + 1))
    done
}

exec 9>"$LOCKFILE"
flock 9

[ -s "$PIDFILE" ] || exit 0
pid=$(cat "$PIDFILE")
if alive "$pid"; then
    kill -TERM "$pid"
    if ! wait_gone "$pid"; then
        echo "zfs-fuse-down: pid $pid ignored SIGTERM for ${TIMEOUT}s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" || { echo "zfs-fuse-down: pid $pid does not die" >&2; exit 1; }
        # Mounts served by the dead daemon answer nothing but ENOTCONN.
        awk '$3 == "fuse.zfs" { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
            umount -l "$mnt" || true
        done
    fi
fi
rm -f "$PIDFILE"
