#!/usr/bin/env bash
# The main job, end to end, on the embedded default dir pool: build osctl, make
# a small busybox container, start and stop it, export it and import the
# archive as a clone. State goes to a fresh OSCTL_ROOT under /tmp unless given.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins -q
osctl() { target/release/osctl "$@"; }

export OSCTL_ROOT="${OSCTL_ROOT:-$(mktemp -d /tmp/osctl-demo.XXXXXX)}"
chmod 755 "$OSCTL_ROOT"
work="$OSCTL_ROOT/work"
mkdir -p "$work"
echo "== state in $OSCTL_ROOT"

# A busybox root file system: static busybox, its applets and an inittab.
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,sbin,etc,proc,sys,dev,tmp,root,run,var}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
ln -sf ../bin/busybox "$rootfs/sbin/init"
printf '::sysinit:/bin/mkdir -p /run/lock\n::respawn:/bin/sleep 1000000\n::shutdown:/bin/sync\n' > "$rootfs/etc/inittab"

echo "== create and run a container on the default dir pool"
osctl user new demo
osctl ct new --user demo --from-dir "$rootfs" web1
osctl ct start web1
osctl ct exec web1 -- sh -c 'echo "hello from $(hostname), uid $(id -u) inside" | tee /root/greeting'
osctl ct ls
echo "== consistent export of the running container (a short stop only), import as a clone"
osctl ct export web1 "$work/web1.tar"
tar -tvf "$work/web1.tar"
osctl archive verify "$work/web1.tar"
osctl ct import --as-id web2 "$work/web1.tar"
osctl ct start web2
osctl ct exec web2 -- cat /root/greeting
osctl ct stop web2
osctl ct stop web1
osctl ct ls
echo "== done; remove with: OSCTL_ROOT=$OSCTL_ROOT target/release/osctl ct del web1 (and web2), user del demo"
