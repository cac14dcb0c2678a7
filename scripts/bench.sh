#!/usr/bin/env bash
# The benchmark of issue 5: osctl export/import against the raw tools (zfs send
# and recv, btrfs send and receive, GNU tar, gzip -6, pigz -6) on the same
# generated data in the same run; prints a markdown table. Needs root.
#
#   scripts/bench.sh                  # ~1 GiB (+ a 200 MiB container), all backends
#   QUICK=1 scripts/bench.sh          # ~200 MiB, a few minutes
#   scripts/bench.sh --backends zfs --runs 5 --output docs/performance.md
#
# Environment: QUICK=1, BENCH_WORKDIR (default /var/tmp/osctl-bench; the
# generated data is kept there between runs), BENCH_SETUP=0 to skip installing
# packages, BENCH_NICE (default -10: on a machine shared with builds and tests
# the contenders get the CPUs first, else parallel tools measure the load more
# than themselves; 0 to run at normal priority). Other arguments go to
# osctl-bench (see `osctl-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${BENCH_SETUP:-1}" = 1 ]; then
  scripts/setup.sh
fi
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p osctl -p osctl-bench

workdir="${BENCH_WORKDIR:-/var/tmp/osctl-bench}"
args=(--workdir "$workdir" --osctl target/release/osctl --repo "$PWD")
if [ "${QUICK:-0}" = 1 ]; then
  args+=(--quick)
fi

# Priority: with the kernel's autogroups (sched_autogroup_enabled), nice only
# ranks processes of the same session; the session's autogroup must be
# reniced to rank the bench above other sessions' builds. Restored at exit.
nice_value="${BENCH_NICE:--10}"
old_autogroup_nice=
if [ "$nice_value" != 0 ] && [ -w /proc/self/autogroup ]; then
  old_autogroup_nice=$(sed -n 's/.* nice \(-\?[0-9]*\)$/\1/p' /proc/self/autogroup)
  echo "$nice_value" > /proc/self/autogroup
fi

# The bench cleans up after itself, also on Ctrl-C; this catches the rest
# (a kill -9, a crash) so no pool or mount outlives the script.
on_exit() {
  target/release/osctl-bench cleanup --workdir "$workdir" || true
  if [ -n "$old_autogroup_nice" ]; then
    echo "$old_autogroup_nice" > /proc/self/autogroup || true
  fi
}
trap on_exit EXIT
nice -n "$nice_value" target/release/osctl-bench "${args[@]}" "$@"
