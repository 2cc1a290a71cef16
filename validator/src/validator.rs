//! The decision for one TLS handshake.
//!
//! Both directions: the peer's leaf certificate must pass Mazu's verdict
//! (token, registration with this certificate's key, SPIFFE ID: see
//! [`mazu_identity::verdict()`]) against the registry the agent verified.
//! Outbound (Envoy is the client) the peer must also be one of the SPIFFE
//! IDs configured for the destination the SNI names: a registered workload
//! of another service account cannot answer in place of the one the client
//! meant to reach.
//!
//! The handshake has already proved the peer holds the key of the leaf
//! certificate; the rest of the chain is ignored (Mazu certificates are
//! self-signed, and no CA is trusted).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use mazu_identity::{DenyReason, PeerIdentity, Verdict, Verifier};

use crate::config::ValidatorConfig;
use crate::source::{RegistrySource, SourceError};

/// Why a handshake failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The peer sent no certificate.
    #[error("no peer certificate")]
    NoCertificate,
    /// No registry to decide with.
    #[error("{0}")]
    Registry(SourceError),
    /// The verdict refused the certificate.
    #[error("{0}")]
    Denied(DenyReason),
    /// Outbound to a host the configuration does not list.
    #[error("no expected identity for destination {0:?}")]
    UnknownDestination(String),
    /// Outbound, a valid registered peer that does not serve this destination.
    #[error("{found} does not serve {destination:?}")]
    WrongServer {
        /// The destination (SNI).
        destination: String,
        /// The peer's SPIFFE ID.
        found: String,
    },
}

impl Refusal {
    /// A stable snake_case name for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::Registry(error) => error.as_str(),
            Self::Denied(reason) => reason.as_str(),
            Self::UnknownDestination(_) => "unknown_destination",
            Self::WrongServer { .. } => "wrong_server",
        }
    }
}

/// One direction of a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Envoy accepted the connection: the peer is a client.
    Server,
    /// Envoy connects out to the host `sni` names: the peer is a server.
    Client,
}

/// The validator of one TLS context configuration.
pub struct Validator {
    config: ValidatorConfig,
    source: Arc<RegistrySource>,
    verifier: Arc<Mutex<Verifier>>,
}

impl Validator {
    /// A validator for `config`; the registry file is read on first use.
    /// Validators of the same registry file share its registry, and those
    /// of the same `trust` their verdict cache (`crate::shared`).
    pub fn new(config: ValidatorConfig) -> Self {
        let source = crate::shared::registry_source(
            &config.registry_file,
            config.max_registry_age,
            config.recheck_interval,
        );
        let verifier = crate::shared::verifier(&config);
        Validator {
            config,
            source,
            verifier,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// Decides on the peer's `leaf` certificate (DER) at `now`.
    pub fn check(
        &self,
        leaf: Option<&[u8]>,
        side: Side,
        sni: &str,
        now: SystemTime,
    ) -> Result<PeerIdentity, Refusal> {
        let leaf = leaf.ok_or(Refusal::NoCertificate)?;
        // Outbound to an unknown host fails before any work on the peer.
        let expected = match side {
            Side::Server => None,
            Side::Client => Some(
                self.config
                    .expected_servers(sni)
                    .ok_or_else(|| Refusal::UnknownDestination(sni.to_owned()))?,
            ),
        };
        let registry = self.source.current(now).map_err(Refusal::Registry)?;
        let now_unix = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let verdict = self
            .verifier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .verdict(leaf, now_unix, &registry.registry);
        let peer = match verdict {
            Verdict::Allow(peer) => peer,
            Verdict::Deny(reason) => return Err(Refusal::Denied(reason)),
        };
        if let Some(expected) = expected
            && !expected.contains(&peer.spiffe_id)
        {
            return Err(Refusal::WrongServer {
                destination: sni.to_owned(),
                found: peer.spiffe_id.as_str().to_owned(),
            });
        }
        Ok(peer)
    }
}
