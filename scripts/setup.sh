#!/usr/bin/env bash
# Prepares a fresh Debian machine (as root) for osctl: the packages it and its
# tests use, a Rust toolchain if there is none, and the zfs-fuse daemon.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  lxc uidmap busybox-static   # the runtime and the test containers
  iproute2                    # network interfaces: ip on the host and (nsenter) in containers
  zfs-fuse btrfs-progs        # storage backends
  e2fsprogs util-linux        # loop-mounted test file systems
  tar gzip pigz zstd          # reference tools the tests and benchmark compare with
  ruby                        # reads our archives as the original osctl does (compat tests)
  openssh-server openssh-client  # ct send: ssh to a test sshd on a loopback address
  time debootstrap            # benchmark: peak RSS, a real rootfs
  build-essential pkg-config ca-certificates curl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# zfs-fuse: one daemon per machine; the zfs tests need it.
scripts/zfs-fuse-up.sh || echo "setup: zfs-fuse could not be started; zfs tests will skip" >&2
