//! Mazu's proxy-wasm network filter for Envoy.
//!
//! Envoy completes the mTLS handshake (the peer proved it holds the key of
//! its self-signed certificate); this filter then admits the connection only
//! if [`mazu_identity::verdict`] allows the peer certificate against the
//! registry of registered workloads, which it keeps current from the key
//! curator through HTTP callouts. Everything else is closed, counted and
//! logged with its reason.
//!
//! The crate is thin glue around pure, natively tested modules:
//! - [`config`]: the plugin configuration (JSON), validated once;
//! - [`engine`]: the per-VM decision state (registry copy, verdict cache);
//! - [`sync`]: what to fetch from the curator and what its answers mean;
//! - [`shared`]: the cross-VM protocol that hands the verified registry to
//!   every worker VM through Envoy's shared data;
//! - [`transparency`]: following the curator's witnessed log and deriving
//!   the registry from its records (checkpoint signature, witness quorum,
//!   records that must give the checkpoint's root);
//! - [`parking`]: connections held until the first registry arrives;
//! - [`cache`]: the bounded verdict cache;
//! - [`metrics`]: metric names;
//! - [`vouch`]: the handshake validator's word on a token signature.
//!
//! The proxy-wasm glue (`plugin`) is compiled only for `wasm32`. The
//! configuration reference, metrics and behaviour are in `docs/filter.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod cache;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod parking;
pub mod shared;
pub mod sync;
pub mod transparency;
pub mod vouch;

#[cfg(target_arch = "wasm32")]
mod plugin;

#[cfg(test)]
mod testing;
