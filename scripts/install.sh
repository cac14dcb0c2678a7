#!/usr/bin/env bash
# Builds osctl and installs it with its man pages and shell completions, all
# generated from the command-line grammar (osctl gen-man, osctl gen-completion).
#   PREFIX   where to install (default /usr/local)
#   DESTDIR  a staging root prepended to every path (packaging, tests)
#   OSCTL_BIN  an already built binary to install instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${PREFIX:-/usr/local}
dest=${DESTDIR:-}
bin=${OSCTL_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --bin osctl
  bin=target/release/osctl
fi

bindir=$dest$prefix/bin
mandir=$dest$prefix/share/man/man8
bashdir=$dest$prefix/share/bash-completion/completions
zshdir=$dest$prefix/share/zsh/site-functions
fishdir=$dest$prefix/share/fish/vendor_completions.d

install -d "$bindir" "$mandir" "$bashdir" "$zshdir" "$fishdir"
install -m 0755 "$bin" "$bindir/osctl"
"$bin" gen-man "$mandir"
"$bin" gen-completion bash >"$bashdir/osctl"
"$bin" gen-completion zsh >"$zshdir/_osctl"
"$bin" gen-completion fish >"$fishdir/osctl.fish"
echo "installed $bindir/osctl, $(ls "$mandir" | grep -c '^osctl') man pages in $mandir, completions for bash, zsh and fish"
