//! `mazu-audit monitor`: watches the log for registrations of one SPIFFE ID
//! (a team notices its stolen token being used to register a key).
//!
//! A log entry matches when its token's Kubernetes claims name the SPIFFE
//! ID's namespace and service account (the trust domain is the mesh's, not a
//! token claim). The token's signature is not checked here: `check` does
//! that; the monitor reports what the curator *logged*, which is what the
//! data plane will act on.

use core::time::Duration;
use std::path::PathBuf;

use mazu_curator::api::views::LogJson;
use mazu_curator::entry::{LogEntry, MAX_TOKEN_LEN};
use mazu_identity::SpiffeId;

use crate::AuditError;
use crate::client::CuratorClient;
use crate::state::State;

/// What to watch.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The curator's base URL.
    pub curator: String,
    /// The watched identity.
    pub spiffe_id: SpiffeId,
    /// Time between polls.
    pub interval: Duration,
    /// Remembers the position in the log between runs.
    pub state: Option<PathBuf>,
    /// Start at the current end of the log (ignore existing entries), when
    /// the state file does not say where to start.
    pub from_now: bool,
}

/// A registration of the watched identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Its log index.
    pub index: u64,
    /// When the curator accepted it (Unix ms).
    pub accepted_at_ms: u64,
    /// The RBE slot.
    pub slot: u32,
    /// The workload id (hex).
    pub id: String,
    /// SHA-256 of the registered TLS key (hex).
    pub spki_hash: String,
    /// The token's issuer.
    pub issuer: String,
    /// The pod the token is bound to.
    pub pod: String,
}

impl core::fmt::Display for Alert {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "index={} accepted_at_ms={} slot={} id={} spki_hash={} issuer={} pod={}",
            self.index,
            self.accepted_at_ms,
            self.slot,
            self.id,
            self.spki_hash,
            self.issuer,
            self.pod
        )
    }
}

/// A watcher at a position in the log.
#[derive(Debug)]
pub struct Monitor {
    config: MonitorConfig,
    client: CuratorClient,
    next: u64,
}

impl Monitor {
    /// Starts at the state file's position, or at 0 (or the current end
    /// with `from_now`).
    pub async fn new(config: MonitorConfig) -> Result<Self, AuditError> {
        let client = CuratorClient::new(&config.curator)?;
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

    fn inspect(&self, index: u64, b64: &str) -> Result<Option<Alert>, String> {
        let bytes = <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64)
            .map_err(|_| "entry is not base64".to_owned())?;
        let entry = LogEntry::from_bytes(&bytes).map_err(|e| e.to_string())?;
        let claims = mazu_identity::jwt::parse_claims_unverified(&entry.token, MAX_TOKEN_LEN)
            .map_err(|e| format!("token does not parse: {e}"))?;
        let id = &self.config.spiffe_id;
        if claims.kubernetes.namespace != id.namespace()
            || claims.kubernetes.service_account.name != id.service_account()
        {
            return Ok(None);
        }
        let registration = mazu_rbe::Registration::from_bytes(&entry.registration)
            .map_err(|e| format!("registration does not decode: {e}"))?;
        Ok(Some(Alert {
            index,
            accepted_at_ms: entry.accepted_at_ms,
            slot: registration.slot,
            id: hex::encode(mazu_identity::WorkloadId::of_token(&entry.token).as_bytes()),
            spki_hash: hex::encode(
                mazu_identity::SpkiHash::of_spki_der(&entry.tls_spki).as_bytes(),
            ),
            issuer: claims.issuer,
            pod: claims.kubernetes.pod.name,
        }))
    }
}
