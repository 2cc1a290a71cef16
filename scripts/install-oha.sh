#!/usr/bin/env bash
# Installs the `oha` HTTP load generator (constant-rate mode with latency
# correction, JSON output) into .tools/oha/bin/oha (repo-relative, gitignored)
# with `cargo install --locked` from crates.io. Safe to run again: an installed
# oha of the pinned version is kept. The bench harness (`mazu-bench`, `just perf`)
# uses it.
#
#   scripts/install-oha.sh              install if needed, print the path and version
#   OHA_VERSION=1.10.0 scripts/install-oha.sh
set -euo pipefail
cd "$(dirname "$0")/.."

version="${OHA_VERSION:-}"
root="$PWD/.tools/oha"
bin="$root/bin/oha"

log() { printf '[install-oha] %s\n' "$*" >&2; }

if [[ -x "$bin" ]] && { [[ -z "$version" ]] || "$bin" --version | grep -q " $version\$"; }; then
  log "$("$bin" --version) already installed"
else
  log "cargo install --locked oha ${version:+--version $version} --root $root"
  # Its own target directory: oha's dependencies are not the workspace's.
  CARGO_TARGET_DIR="$PWD/.tools/cache/oha-target" \
    cargo install --locked oha ${version:+--version "$version"} --root "$root"
fi
echo "$bin"
"$bin" --version
