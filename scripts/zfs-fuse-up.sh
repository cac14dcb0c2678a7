#!/bin/sh
# Starts the zfs-fuse daemon unless one already answers, then waits until
# `zfs list` works. Idempotent and safe to run concurrently (flock).
#
# zfs-fuse is ZFS in user space (pool version 23). There is one daemon per
# machine; a second one started while the first is alive exits silently, so we
# never start one while a previous daemon's pid is still around.
set -eu

PIDFILE=${ZFS_FUSE_PIDFILE:-/run/zfs-fuse.pid}
LOCKFILE=${ZFS_FUSE_LOCKFILE:-/run/zfs-fuse-up.lock}
TIMEOUT=${ZFS_FUSE_TIMEOUT:-30}

if ! command -v zfs-fuse >/dev/null 2>&1; then
    echo "zfs-fuse-up: zfs-fuse is not installed (apt-get install zfs-fuse)" >&2
    exit 2
fi

answers() { zfs list >/dev/null 2>&1; }

# True while the pid file names a live zfs-fuse (not a zombie, not a reused pid).
pid_alive() {
    [ -s "$PIDFILE" ] || return 1
    stat=$(cat "/proc/$(cat "$PIDFILE")/stat" 2>/dev/null) || return 1
    case "$stat" in
        *"(zfs-fuse) Z"*) return 1 ;;
        *"(zfs-fuse) "*) return 0 ;;
        *) return 1 ;;
    esac
}

exec 9>"$LOCKFILE"
flock 9

if answers; then
    exit 0
fi

if ! pid_alive; then
    # A daemon that was killed leaves its pid file, and zfs-fuse refuses to
    # start (silently, exit status 1) while the file exists.
    rm -f "$PIDFILE"
    # The daemon must not inherit our lock (fd 9): it would hold it forever.
    zfs-fuse --pidfile "$PIDFILE" --no-kstat-mount 9>&-
fi

waited=0
while ! answers; do
    if [ "$waited" -ge $((TIMEOUT * 10)) ]; then
        echo "zfs-fuse-up: the daemon did not answer within ${TIMEOUT}s" >&2
        exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
done
