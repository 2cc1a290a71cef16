//! The local Mazu mesh on 127.0.0.1, with real processes: the development
//! token issuer, the key curator, and for each service a node agent, an
//! Envoy sidecar running the Mazu filter inbound and outbound, and a small
//! backend.
//!
//! - [`mesh`]: start, drive and stop the mesh ([`mesh::LocalMesh`]);
//! - [`envoy_config`]: the sidecar configuration, rendered from the
//!   readable templates in `e2e/envoy/`;
//! - [`attacks`]: the forged credentials of the attack scenarios;
//! - [`handshake`]: what the TLS handshake decides alone (an impostor
//!   server counting the bytes it gets, a sidecar without the filter);
//! - [`liar`]: a lying curator in front of the real one (the adversary);
//! - [`scenarios`]: the connections the demo makes, and its table;
//! - [`soak`]: the registry-lifecycle soak (many registrations through a
//!   small registry under continuous traffic; `tests/soak.rs`);
//! - [`backend`], [`process`], [`binaries`]: the workloads, child-process
//!   handling, and where the programs are.
//!
//! `mazu-mesh` (the README's main command, `just demo`) runs it; the tests
//! in `tests/scenarios.rs` assert each scenario against the real Envoys.

#![forbid(unsafe_code)]

pub mod attacks;
pub mod backend;
pub mod binaries;
pub mod envoy_config;
pub mod handshake;
pub mod istio_sidecar;
pub mod liar;
pub mod mesh;
pub mod process;
pub mod scenarios;
pub mod soak;
