//! `mazu-audit`: checks that a Mazu key curator is honest, using only what it
//! publishes.
//!
//! - [`check`]: verifies the checkpoint (the curator's signature and a
//!   quorum of witness cosignatures), downloads the whole log (format 2:
//!   entries and their leaf records), checks every record against its entry,
//!   re-verifies every bind (proof of possession, RBE proof of knowledge and
//!   helper values) and reveal (the token as of the entry's time), replays
//!   the id lifecycle with the shared rules (first binding wins) and the RBE
//!   state, compares the recomputed public parameters and registry with what
//!   the curator serves, recomputes the Merkle root over the records and
//!   checks it against the checkpoint, and checks that checkpoint against the
//!   one remembered from the previous run ([`state`]);
//! - [`monitor`]: watches the log for binds and reveals of one SPIFFE ID or
//!   of given workload ids;
//! - [`client`]: the small HTTP client both use.
//!
//! Every problem found is a [`Discrepancy`] (with the log index when it is
//! about one entry); the audit goes on after one, so that a run reports
//! everything. Usage and formats: `docs/audit.md`.

#![forbid(unsafe_code)]

pub mod check;
pub mod client;
pub mod monitor;
pub mod state;

use core::fmt;

/// One thing the curator got wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    /// The log index it concerns, if it concerns one entry.
    pub index: Option<u64>,
    /// What is wrong, for people.
    pub message: String,
}

impl Discrepancy {
    /// A discrepancy about log entry `index`.
    pub fn at(index: u64, message: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            message: message.into(),
        }
    }

    /// A discrepancy about the log as a whole.
    pub fn global(message: impl Into<String>) -> Self {
        Self {
            index: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "DISCREPANCY index={i}: {}", self.message),
            None => write!(f, "DISCREPANCY: {}", self.message),
        }
    }
}

/// Why an audit could not be carried out (as opposed to finding
/// discrepancies, which it reports and goes on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The curator could not be reached or answered an error.
    #[error("curator request {path} failed: {reason}")]
    Http {
        /// The request path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is unusable (bad JWKS, bad CRS file, ...).
    #[error("{0}")]
    Config(String),
}
