#!/bin/sh
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the
# stable toolchain and runs one of them.
#
#   fuzz/run.sh TARGET [SECONDS] [libFuzzer options...]
#   fuzz/run.sh build             # only build
#   fuzz/run.sh corpus            # regenerate the seed corpus
#
# TARGET is archive, documents or extract. New inputs go to
# fuzz/corpus-work/TARGET (not committed); the committed seeds in
# fuzz/corpus/TARGET are read only. Findings are saved as
# fuzz/artifacts/TARGET/crash-*, timeout-*, oom-*; replay one with
#   fuzz/target/x86_64-unknown-linux-gnu/release/TARGET fuzz/artifacts/TARGET/crash-...
set -eu
here=$(cd "$(dirname "$0")" && pwd)
triple=x86_64-unknown-linux-gnu
bin=$here/target/$triple/release

# cargo fuzz's flags without a sanitizer (those need nightly): edge
# coverage, comparison tracing, and the checks a debug build has.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

build() {
    # --target keeps the flags off build scripts and proc macros.
    cargo build --manifest-path "$here/Cargo.toml" --release --target $triple "$@"
}

case "${1:-}" in
    build) build --bin archive --bin documents --bin extract; exit ;;
    corpus)
        # The generator needs no instrumentation.
        RUSTFLAGS= cargo run --manifest-path "$here/Cargo.toml" --release --bin gen-corpus -- "$here/corpus"
        exit ;;
    archive|documents|extract) target=$1; shift ;;
    *) echo "usage: $0 archive|documents|extract [SECONDS] [libFuzzer options] | build | corpus" >&2; exit 2 ;;
esac
seconds=${1:-600}
[ $# -gt 0 ] && shift
build --bin "$target"
mkdir -p "$here/corpus-work/$target" "$here/artifacts/$target"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/osctl-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# -timeout: an input running over 10 s is a hang; -rss_limit_mb: memory.
TMPDIR=$scratch "$bin/$target" "$here/corpus-work/$target" "$here/corpus/$target" \
    -artifact_prefix="$here/artifacts/$target/" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1 "$@"
