# Mazu: the commands people run. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Crates that must stay free of std and I/O (they run inside the Envoy Wasm filter).
no_std_crates := "-p mazu-rbe -p mazu-identity"

# List the recipes.
default:
    @just --list

# Install what a fresh machine lacks (toolchain target, just).
setup:
    bash scripts/setup.sh

# The main job: start the local mesh (curator, agents, Envoy sidecars with the filter,
# backends) on 127.0.0.1, show what it allows and denies, stop it. `just demo --keep-up`
# leaves it running until Ctrl-C.
demo *args: wasm-filter
    cargo build -p mazu-curator -p mazu-agent -p mazu-witness -p mazu-validator -p mazu-e2e
    "${CARGO_TARGET_DIR:-target}/debug/mazu-mesh" {{args}}

# The registry-lifecycle soak (docs/soak.md): capacity 16, 20 s tokens replaced every 6 s,
# four services calling each other through real Envoys; prints the series. 30 minutes by
# default; `just soak 300` is the CI run.
soak secs="1800": wasm-filter
    cargo build -p mazu-curator -p mazu-agent -p mazu-witness -p mazu-audit
    MAZU_SOAK_SECS={{secs}} cargo test -p mazu-e2e --test soak -- --nocapture

# The RBE walkthrough: CRS, registrations, encryption, membership proofs (library only).
rbe-demo:
    cargo run --release -p mazu-rbe --example rbe_walkthrough

# Every check CI runs: formatting, lints, the no_std wasm32 build, the filter .wasm, and all tests.
test: fmt-check clippy wasm-check wasm-filter istio-check
    cargo test --workspace --all-targets
    cargo test --workspace --doc

# Offline checks of istio/: CRD + Kubernetes schemas, the filter's config parser, envoy --mode validate, demo dry run.
istio-check: wasm-filter
    python3 istio/tests/check_manifests.py

# Build the pure-logic crates for wasm32 without std, as the filter will.
wasm-check:
    cargo build {{no_std_crates}} --no-default-features --target wasm32-wasip1

# Build the Envoy filter (.wasm, size-optimized) that wasm-tests and Envoy load.
wasm-filter:
    cargo build -p mazu-filter --target wasm32-wasip1 --profile wasm
    @ls -l "${CARGO_TARGET_DIR:-target}/wasm32-wasip1/wasm/mazu_filter.wasm"

# Lints, warnings denied (native, and the filter as Envoy runs it).
clippy:
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p mazu-filter --target wasm32-wasip1 -- -D warnings

fmt:
    cargo fmt --all

fmt-check:
    cargo fmt --all -- --check

# Criterion benchmarks; e.g. `just bench mazu-rbe`.
bench crate="":
    cargo bench {{ if crate == "" { "--workspace" } else { "-p " + crate } }}

# Run one fuzz target for a while (needs nightly + cargo-fuzz); e.g. `just fuzz identity certificate 300`.
fuzz crate target seconds="60":
    cargo install --locked cargo-fuzz >/dev/null 2>&1 || true
    cd {{crate}}/fuzz && cargo +nightly fuzz run {{target}} -- -max_total_time={{seconds}}

# API documentation for the workspace.
doc:
    cargo doc --workspace --no-deps

# Side-by-side performance run (plain mTLS vs Mazu's handshake validator + inbound filter through real Envoys: latency, Envoy CPU per request and per new connection; ~15 min): writes docs/performance.md and docs/img/p90-latency.svg.
perf *args:
    bash scripts/install-oha.sh
    bash scripts/install-envoy.sh
    cargo build -p mazu-curator -p mazu-agent -p mazu-witness -p mazu-validator -p mazu-bench
    cargo build -p mazu-filter --target wasm32-wasip1 --profile wasm
    "${CARGO_TARGET_DIR:-target}/debug/mazu-bench" --out docs/ {{args}}
