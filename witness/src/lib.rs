//! `mazu-witness`: a C2SP `tlog-witness` service for Mazu's key curator (and
//! any log with C2SP checkpoints signed by an Ed25519 note key).
//!
//! For each configured log (origin and checkpoint verifier key) it keeps
//! the latest checkpoint it cosigned, durably, and answers
//! `POST /add-checkpoint`: it cosigns (C2SP `tlog-cosignature` v1) a new
//! checkpoint only if the log signed it and a consistency proof shows it
//! extends the stored one. Clients (the filter, agents, auditors) require a
//! quorum of such cosignatures (`mazu_log::cosignature::WitnessPolicy`), so
//! the curator cannot show them a forked or rolled-back log unless a quorum
//! of witnesses colludes with it.
//!
//! Mazu's extension, `POST /mazu/v1/add-checkpoint`, takes a checkpoint with
//! its leaf records: the witness keeps each log's registry follower
//! (`mazu_identity::registry::LogFollower`) and cosigns a checkpoint's
//! `mazu-state-sha256` line only if it derived that state itself (the
//! standard route refuses such checkpoints).
//!
//! Modules: [`witness`] (the protocol's checks, no HTTP), [`store`] (the
//! durable table), [`api`] (HTTP), [`server`] (process wiring),
//! [`config`] (flags), [`metrics`]; durable files and the key come from `mazu_service::files`,
//! TLS pinned to the witness's own key (`--tls-key`) from `mazu_service::tls`.
//! See `docs/witness.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod metrics;
pub mod server;
pub mod store;
pub mod witness;

pub use config::{Args, Config};
pub use server::{Server, ServerError, run};
pub use witness::{AddError, Cosigned, LogStatus, Witness};
