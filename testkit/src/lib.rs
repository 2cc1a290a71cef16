//! Process harnesses for Mazu's tests and tools: what the end-to-end mesh,
//! the agent, audit and validator tests, the benchmarks and the wasmtime
//! host of the filter (`mazu-wasm-tests`) share to run real processes and
//! feed them real inputs on 127.0.0.1. It hosts no `.wasm` itself.
//!
//! - [`fixtures`]: tokens, certificates, registries and filter
//!   configurations made with the identity crate and the development issuer;
//! - [`witnessed`]: a curator's witnessed log in memory (records,
//!   checkpoints, cosignatures), serving what the curator serves;
//! - [`curator`]: the real `mazu-curator` process, with registrations
//!   through its API;
//! - [`curator_log`]: a stopped curator's log on disk, read and rewritten;
//! - [`envoy`]: a real Envoy process with the filter;
//! - [`filter_wasm`]: where the built filter `.wasm` is;
//! - [`net`]: free ports, loopback servers and the TLS client and server
//!   (`openssl`) the real-Envoy tests use;
//! - [`http`]: plain HTTP/1.1 requests (curator API, Envoy admin), plain or
//!   TLS to a pinned key.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod curator;
pub mod curator_log;
pub mod envoy;
pub mod filter_wasm;
pub mod fixtures;
pub mod http;
pub mod net;
pub mod witnessed;
