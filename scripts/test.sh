#!/usr/bin/env bash
# Runs every test, after setting the machine up. Needs root (LXC, loop devices,
# zfs-fuse); tests that need a missing part skip with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
cargo test --release --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" "$@"
