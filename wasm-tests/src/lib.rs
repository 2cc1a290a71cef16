//! A wasmtime host for the proxy-wasm ABI, for testing `mazu-filter`'s real
//! `.wasm` without Envoy. The process harnesses (a real Envoy, the curator,
//! fixtures, loopback servers) are in `mazu-testkit`; `tests/envoy.rs` runs
//! the same `.wasm` in a real Envoy with them.
//!
//! - [`plugin`]: load the module, start VMs, drive the root context (ticks,
//!   callout answers) and connections (properties, data, closes);
//! - [`imports`]: the host functions (proxy-wasm calls, the WASI calls Rust's
//!   `std` needs; anything else traps naming the function);
//! - [`state`]: what the host records (logs, stats, shared data, callouts);
//! - [`harness`]: the compiled module (once per process) and configured VMs;
//! - [`callouts`]: a witnessed log of `mazu-testkit` answering the filter's
//!   callouts as the curator does;
//! - [`peer`]: what Envoy reports to the filter for a `mazu-testkit`
//!   workload after the handshake.
//!
//! The tests load the `.wasm` named by `MAZU_FILTER_WASM`, or the one
//! `cargo build -p mazu-filter --target wasm32-wasip1 --profile wasm` leaves
//! in the target directory ([`mazu_testkit::filter_wasm::filter_wasm_path`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod abi;
pub mod callouts;
pub mod harness;
pub mod imports;
pub mod peer;
pub mod plugin;
pub mod state;
