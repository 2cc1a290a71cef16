//! `mazu-audit monitor`: watches the log for the binds and reveals that
//! concern someone (a team notices its stolen token being used, an agent
//! notices its id bound to a key that is not its own).
//!
//! Two kinds of watch, combinable:
//! - a SPIFFE ID: every **reveal** whose token's Kubernetes claims name its
//!   namespace and service account (the trust domain is the mesh's, not a
//!   token claim). A bind carries no token, so it cannot be attributed to a
//!   SPIFFE ID until it is revealed; the alert names the key the id was
//!   bound to (when the monitor saw the bind);
//! - workload ids (SHA-256 of a token): every **bind** and **reveal** of
//!   them (the first bind is the one that counts; a bind the owner did not
//!   make is a front-run).
//!
//! Signatures and tokens are not verified here: `check` does that; the
//! monitor reports what the curator *logged*, which is what the data plane
//! will act on.

use core::time::Duration;
use std::collections::HashMap;
use std::path::PathBuf;

use mazu_curator::api::views::LogJson;
use mazu_curator::entry::{EntryBody, LogEntry, MAX_TOKEN_LEN};
use mazu_identity::SpiffeId;
use sha2::Digest as _;

use crate::AuditError;
use crate::client::CuratorClient;
use crate::state::State;
use mazu_service::tls::ClientTransport;

/// What to watch.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The curator's base URL.
    pub curator: String,
    /// How it is reached (TLS to a pinned key, or plain HTTP).
    pub curator_transport: ClientTransport,
    /// Reveals of tokens for this identity.
    pub spiffe_id: Option<SpiffeId>,
    /// Binds and reveals of these workload ids.
    pub ids: Vec<[u8; 32]>,
    /// Time between polls.
    pub interval: Duration,
    /// Remembers the position in the log between runs.
    pub state: Option<PathBuf>,
    /// Start at the current end of the log (ignore existing entries), when
    /// the state file does not say where to start.
    pub from_now: bool,
}

/// A logged bind or reveal that matches the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// A watched id was bound.
    Bind {
        /// Its log index.
        index: u64,
        /// When the curator logged it (Unix ms).
        at_ms: u64,
        /// The workload id (hex).
        id: String,
        /// The RBE slot.
        slot: u32,
        /// SHA-256 of the bound TLS key (hex).
        spki_hash: String,
    },
    /// A token of the watched SPIFFE ID, or of a watched id, was revealed.
    Reveal {
        /// Its log index.
        index: u64,
        /// When the curator logged it (Unix ms).
        at_ms: u64,
        /// The workload id (hex).
        id: String,
        /// The identity the token names.
        spiffe_id: String,
        /// The token's issuer.
        issuer: String,
        /// The pod the token is bound to.
        pod: String,
        /// The bind the reveal makes live (index and key hash), if the
        /// monitor saw it.
        bound: Option<(u64, String)>,
    },
}

impl core::fmt::Display for Alert {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Alert::Bind {
                index,
                at_ms,
                id,
                slot,
                spki_hash,
            } => write!(
                f,
                "bind index={index} at_ms={at_ms} id={id} slot={slot} spki_hash={spki_hash}"
            ),
            Alert::Reveal {
                index,
                at_ms,
                id,
                spiffe_id,
                issuer,
                pod,
                bound,
            } => {
                write!(
                    f,
                    "reveal of {spiffe_id} index={index} at_ms={at_ms} id={id} issuer={issuer} \
                     pod={pod}"
                )?;
                match bound {
                    Some((i, spki)) => write!(f, " bound_at={i} spki_hash={spki}"),
                    None => write!(f, " bound_at=unseen"),
                }
            }
        }
    }
}

/// A watcher at a position in the log.
#[derive(Debug)]
pub struct Monitor {
    config: MonitorConfig,
    client: CuratorClient,
    next: u64,
    /// The first bind seen of each id (index, key hash), to name the key a
    /// reveal makes live.
    binds: HashMap<[u8; 32], (u64, String)>,
}

impl Monitor {
    /// Starts at the state file's position, or at 0 (or the current end
    /// with `from_now`).
    pub async fn new(config: MonitorConfig) -> Result<Self, AuditError> {
        let client = CuratorClient::new(&config.curator, &config.curator_transport)?;
        let remembered = match &config.state {
            Some(p) => State::load(p)?.monitor_next,
            None => None,
        };
        let next = match remembered {
            Some(n) => n,
            None if config.from_now => {
                let page: LogJson = client.get_json("/v1/log?start=0&limit=1").await?;
                page.size
            }
            None => 0,
        };
        Ok(Self {
            config,
            client,
            next,
            binds: HashMap::new(),
        })
    }

    /// The next log index to look at.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Reads every entry after the current position; returns the alerts and
    /// the entries that could not be read (index, reason).
    pub async fn poll(&mut self) -> Result<(Vec<Alert>, Vec<(u64, String)>), AuditError> {
        let mut alerts = Vec::new();
        let mut unreadable = Vec::new();
        loop {
            let page: LogJson = self
                .client
                .get_json(&format!("/v1/log?start={}&limit=1000", self.next))
                .await?;
            if page.entries.is_empty() {
                break;
            }
            for e in page.entries {
                if e.index != self.next {
                    unreadable.push((self.next, format!("page labels it {}", e.index)));
                }
                match self.inspect(self.next, &e.entry) {
                    Ok(Some(alert)) => alerts.push(alert),
                    Ok(None) => {}
                    Err(reason) => unreadable.push((self.next, reason)),
                }
                self.next += 1;
            }
            if self.next >= page.size {
                break;
            }
        }
        if let Some(path) = &self.config.state {
            let mut state = State::load(path)?;
            state.monitor_next = Some(self.next);
            state.save(path)?;
        }
        Ok((alerts, unreadable))
    }

    fn inspect(&mut self, index: u64, b64: &str) -> Result<Option<Alert>, String> {
        let bytes = <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64)
            .map_err(|_| "entry is not base64".to_owned())?;
        let entry = LogEntry::from_bytes(&bytes).map_err(|e| e.to_string())?;
        let watched_id = self.config.ids.contains(&entry.id);
        match &entry.body {
            EntryBody::Bind { slot, tls_spki, .. } => {
                let spki_hash = hex::encode(sha2::Sha256::digest(tls_spki));
                self.binds
                    .entry(entry.id)
                    .or_insert_with(|| (index, spki_hash.clone()));
                Ok(watched_id.then(|| Alert::Bind {
                    index,
                    at_ms: entry.at_ms,
                    id: hex::encode(entry.id),
                    slot: *slot,
                    spki_hash,
                }))
            }
            EntryBody::Reveal { token } => {
                let claims = mazu_identity::jwt::parse_claims_unverified(token, MAX_TOKEN_LEN)
                    .map_err(|e| format!("token does not parse: {e}"))?;
                let names_watched = self.config.spiffe_id.as_ref().is_some_and(|s| {
                    claims.kubernetes.namespace == s.namespace()
                        && claims.kubernetes.service_account.name == s.service_account()
                });
                if !names_watched && !watched_id {
                    return Ok(None);
                }
                Ok(Some(Alert::Reveal {
                    index,
                    at_ms: entry.at_ms,
                    id: hex::encode(entry.id),
                    spiffe_id: format!(
                        "ns/{}/sa/{}",
                        claims.kubernetes.namespace, claims.kubernetes.service_account.name
                    ),
                    issuer: claims.issuer,
                    pod: claims.kubernetes.pod.name,
                    bound: self.binds.get(&entry.id).cloned(),
                }))
            }
            EntryBody::Release { .. } | EntryBody::Revoke { .. } => Ok(None),
        }
    }
}
