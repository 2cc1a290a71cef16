//! Mazu's key curator.
//!
//! The curator replaces a service mesh's certificate authority with an
//! *unprivileged* service. Workloads register in two steps
//! (`docs/protocol.md`): a **binding** of their id (SHA-256 of their token)
//! to an RBE key (with helper values and proof of knowledge) and a TLS key
//! (with a proof of possession), without the token; then, once that binding
//! is in the witnessed log, the **reveal** of the token. The curator appends
//! each to a durable log (entries summarized by leaf records the Merkle tree
//! commits to), answers only once a checkpoint covering the entry is cosigned
//! by a quorum of witnesses, and serves public data: RBE public parameters,
//! the CRS, the records, openings, membership proofs and the raw log. It
//! holds no secret that makes an identity, and everything it serves can be
//! recomputed from the log.
//!
//! Layout:
//! - [`config`]: flags and validation; [`bootstrap`]: loading the CRS;
//!   [`jwks`]: the issuers' keys (files, or URLs refreshed periodically);
//! - [`store`]: the [`store::LogStore`] trait and the embedded file log;
//! - [`entry`]: the log entry's canonical bytes and its leaf record;
//!   [`pop`]: the TLS proof of possession message; [`holder`]: the bound
//!   key's signature on a release or revocation;
//! - [`registry`]: the in-memory state rebuilt from the log (the id
//!   lifecycle of `mazu_identity::registry::derive` plus the RBE state);
//!   [`reservations`]: slot reservations;
//! - [`register`]: the parallel verification half of a bind, and a reveal's
//!   token checks; [`writer`]: the serialized commit half;
//!   [`lifecycle`]: releases (reveal window, expiry) and holders' signed
//!   releases and revocations;
//! - [`snapshot`]: the state snapshot's file format and writer;
//!   [`snapshot_start`]: starting from it with the checks that follow the
//!   live state; [`prefix_check`]: the background check of the log prefix
//!   it covers; [`recovery`]: the acknowledged checkpoint, start-up
//!   checks, repair;
//! - [`checkpoint`]: the Merkle tree over the records and signed checkpoints;
//!   [`witnessing`]: the witness client and the newest witnessed checkpoint;
//! - [`service`]: [`service::Curator`], the service without HTTP;
//! - [`client`]: the agent side of a binding (reference and tests);
//! - [`api`]: routes, errors, extractors; [`limits`]: per-client rate limits;
//!   [`metrics`]: Prometheus metrics; [`server`]: process wiring.
//!
//! The HTTP API and configuration are documented in `docs/curator.md`.

#![forbid(unsafe_code)]

pub mod api;
pub mod bootstrap;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod entry;
pub mod holder;
pub mod jwks;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod pop;
pub mod prefix_check;
pub mod records_file;
pub mod recovery;
pub mod register;
pub mod registry;
pub mod reservations;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod snapshot_start;
pub mod store;
pub mod witnessing;
pub mod writer;

pub use api::{AppState, app};
pub use service::{Curator, CuratorOptions};
