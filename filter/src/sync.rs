//! Keeping the registry current: what to ask the curator, what its answer
//! means, and how the copy is shared between the VMs of one Envoy.
//!
//! One root context at a time (the holder of a lease in shared data) fetches:
//! first the full snapshot (`GET <registry_path>`), then incremental deltas
//! (`GET <registry_path>?since=<version>`). It publishes every new copy in
//! shared data; every root context (one per worker VM) polls a small status
//! record on its tick and decodes the snapshot when the version moved. Any
//! failure keeps the last good copy; the failure is counted and logged by the
//! caller.

use alloc::string::String;
use alloc::vec::Vec;

use mazu_identity::{RegistryDelta, RegistryError, RegistrySnapshot};

use mazu_log::evidence::CHECKPOINT_SIZE_HEADER;

use crate::config::CuratorConfig;
use crate::transparency::CheckpointFailure;

/// Magic of an encoded snapshot (`MZRS`).
const SNAPSHOT_MAGIC: &[u8; 4] = &mazu_identity::registry::SNAPSHOT_MAGIC;
/// Magic of an encoded delta (`MZRD`).
const DELTA_MAGIC: &[u8; 4] = &mazu_identity::registry::DELTA_MAGIC;

/// The shared-data keys of one registry source. Plugins that share a `vm_id`
/// and the same curator cluster and path share one copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedKeys {
    /// The encoded snapshot.
    pub snapshot: String,
    /// [`RegistryStatus`]: version and last confirmation time.
    pub status: String,
    /// [`Lease`]: which root context fetches.
    pub lease: String,
    /// A counter handing out instance numbers to root contexts.
    pub instances: String,
    /// The last checkpoint accepted
    /// ([`AcceptedCheckpoint`](crate::transparency::AcceptedCheckpoint)).
    pub checkpoint: String,
}

impl SharedKeys {
    /// Keys for the registry behind `curator`.
    pub fn new(curator: &CuratorConfig) -> Self {
        let base = format!(
            "mazu.registry.v1|{}|{}",
            curator.cluster, curator.registry_path
        );
        SharedKeys {
            snapshot: format!("{base}|snapshot"),
            status: format!("{base}|status"),
            lease: format!("{base}|lease"),
            instances: format!("{base}|instances"),
            checkpoint: format!("{base}|checkpoint"),
        }
    }
}

/// What the fetching root publishes beside the snapshot: the version it holds
/// and when the curator last confirmed it (a 200 or a 304).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryStatus {
    /// The snapshot version in shared data.
    pub version: u64,
    /// When the curator last confirmed it, milliseconds since the epoch.
    pub confirmed_ms: u64,
}

impl RegistryStatus {
    /// 16 bytes: version then confirmation time, big-endian.
    pub fn encode(&self) -> [u8; 16] {
        encode_two_u64(self.version, self.confirmed_ms)
    }

    /// Decodes [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (version, confirmed) = two_u64(bytes)?;
        Some(RegistryStatus {
            version,
            confirmed_ms: confirmed,
        })
    }
}

/// Who fetches the registry, until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The holder's instance number.
    pub owner: u64,
    /// When the lease lapses unless renewed, milliseconds since the epoch.
    pub expires_ms: u64,
}

impl Lease {
    /// 16 bytes: owner then expiry, big-endian.
    pub fn encode(&self) -> [u8; 16] {
        encode_two_u64(self.owner, self.expires_ms)
    }

    /// Decodes [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (owner, expires_ms) = two_u64(bytes)?;
        Some(Lease { owner, expires_ms })
    }

    /// Whether instance `me` may (re)take the lease at `now_ms`: it is free,
    /// lapsed, or already `me`'s.
    pub fn may_take(current: Option<Lease>, me: u64, now_ms: u64) -> bool {
        current.is_none_or(|lease| lease.owner == me || lease.expires_ms <= now_ms)
    }
}

/// Two big-endian `u64`s in 16 bytes (the inverse of [`two_u64`]).
fn encode_two_u64(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

fn two_u64(bytes: &[u8]) -> Option<(u64, u64)> {
    let bytes: &[u8; 16] = bytes.try_into().ok()?;
    let (a, b) = bytes.split_at(8);
    Some((
        u64::from_be_bytes(a.try_into().ok()?),
        u64::from_be_bytes(b.try_into().ok()?),
    ))
}

/// Decodes a shared instance counter (8 bytes, big-endian; absent = 0).
pub fn decode_counter(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Which kind of request a fetch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchKind {
    /// The full snapshot, conditional on the version held (if any).
    Full {
        /// The version held, sent as `If-None-Match`.
        have: Option<u64>,
    },
    /// The changes since `since`.
    Delta {
        /// The version held.
        since: u64,
    },
}

/// One callout: path and headers (pseudo-headers included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// Full or delta.
    pub kind: FetchKind,
    /// `(name, value)` pairs for `dispatch_http_call`.
    pub headers: Vec<(String, String)>,
}

impl FetchRequest {
    /// The request for `kind` against `curator`; `held_checkpoint` is the
    /// size of the last checkpoint accepted, for which the curator adds a
    /// consistency proof.
    pub fn new(curator: &CuratorConfig, kind: FetchKind, held_checkpoint: Option<u64>) -> Self {
        let path = match kind {
            FetchKind::Full { .. } => curator.registry_path.clone(),
            FetchKind::Delta { since } => format!("{}?since={since}", curator.registry_path),
        };
        let mut headers = vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), path),
            (":authority".to_owned(), curator.authority.clone()),
            ("accept".to_owned(), "application/octet-stream".to_owned()),
        ];
        if let FetchKind::Full {
            have: Some(version),
        } = kind
        {
            headers.push(("if-none-match".to_owned(), format!("\"{version}\"")));
        }
        if let Some(size) = held_checkpoint {
            headers.push((CHECKPOINT_SIZE_HEADER.to_owned(), size.to_string()));
        }
        FetchRequest { kind, headers }
    }
}

/// Why an answer was not used. The last good registry stays in force.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchFailure {
    /// The call could not be dispatched (unknown cluster, ...).
    Dispatch,
    /// No answer within the timeout (or a reset: no `:status`).
    NoAnswer,
    /// An HTTP status other than 200 or 304.
    Status(u16),
    /// A body larger than `curator.max_body_bytes`.
    TooLarge(usize),
    /// A 200 whose body is neither a snapshot nor a delta, or does not decode.
    BadBody(RegistryError),
    /// A 200 without a recognisable body.
    Garbage,
    /// A snapshot older than the one held (a curator must never go back).
    Rollback {
        /// The version held.
        have: u64,
        /// The version offered.
        got: u64,
    },
    /// A delta that does not apply to the registry held.
    DeltaMismatch(RegistryError),
    /// The log's evidence is missing or does not hold: the curator's log is
    /// not the append-only log it signed before, or the registry is not the
    /// one it signed.
    Checkpoint(CheckpointFailure),
}

impl FetchFailure {
    /// A stable name for metrics and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            FetchFailure::Dispatch => "dispatch",
            FetchFailure::NoAnswer => "no_answer",
            FetchFailure::Status(_) => "http_status",
            FetchFailure::TooLarge(_) => "too_large",
            FetchFailure::BadBody(_) | FetchFailure::Garbage => "bad_body",
            FetchFailure::Rollback { .. } => "rollback",
            FetchFailure::DeltaMismatch(_) => "delta_mismatch",
            FetchFailure::Checkpoint(_) => "checkpoint",
        }
    }

    /// Every [`as_str`](Self::as_str) name, for defining metrics up front.
    pub const ALL_NAMES: [&'static str; 8] = [
        "dispatch",
        "no_answer",
        "http_status",
        "too_large",
        "bad_body",
        "rollback",
        "delta_mismatch",
        "checkpoint",
    ];
}

impl core::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FetchFailure::Dispatch => f.write_str("the callout could not be dispatched"),
            FetchFailure::NoAnswer => f.write_str("no answer (timeout or reset)"),
            FetchFailure::Status(status) => write!(f, "HTTP status {status}"),
            FetchFailure::TooLarge(len) => write!(f, "body of {len} bytes is over the limit"),
            FetchFailure::BadBody(e) => write!(f, "undecodable registry body: {e}"),
            FetchFailure::Garbage => f.write_str("body is neither a registry snapshot nor a delta"),
            FetchFailure::Rollback { have, got } => {
                write!(f, "snapshot version {got} is older than the held {have}")
            }
            FetchFailure::DeltaMismatch(e) => write!(f, "delta does not apply: {e}"),
            FetchFailure::Checkpoint(e) => write!(f, "refused by the log's evidence: {e}"),
        }
    }
}

/// What an answer means for the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A registry newer than the one held (from a snapshot or a delta).
    Updated(RegistrySnapshot),
    /// The curator confirms the held registry is current.
    Unchanged,
    /// Not usable.
    Failed(FetchFailure),
}

/// Interprets the curator's answer. `status` is `None` when the callout got
/// no HTTP answer; `body` is the whole body.
pub fn interpret(
    current: Option<&RegistrySnapshot>,
    status: Option<u16>,
    body: &[u8],
) -> FetchOutcome {
    match status {
        None => FetchOutcome::Failed(FetchFailure::NoAnswer),
        Some(304) if current.is_some() => FetchOutcome::Unchanged,
        Some(200) => interpret_body(current, body),
        Some(other) => FetchOutcome::Failed(FetchFailure::Status(other)),
    }
}

fn interpret_body(current: Option<&RegistrySnapshot>, body: &[u8]) -> FetchOutcome {
    if body.starts_with(SNAPSHOT_MAGIC) {
        let snapshot = match RegistrySnapshot::decode(body) {
            Ok(snapshot) => snapshot,
            Err(e) => return FetchOutcome::Failed(FetchFailure::BadBody(e)),
        };
        match current {
            Some(held) if snapshot.version() < held.version() => {
                FetchOutcome::Failed(FetchFailure::Rollback {
                    have: held.version(),
                    got: snapshot.version(),
                })
            }
            Some(held) if snapshot.version() == held.version() => {
                if snapshot == *held {
                    FetchOutcome::Unchanged
                } else {
                    // Same version, other content: a curator must not do that.
                    FetchOutcome::Failed(FetchFailure::Rollback {
                        have: held.version(),
                        got: snapshot.version(),
                    })
                }
            }
            _ => FetchOutcome::Updated(snapshot),
        }
    } else if body.starts_with(DELTA_MAGIC) {
        let delta = match RegistryDelta::decode(body) {
            Ok(delta) => delta,
            Err(e) => return FetchOutcome::Failed(FetchFailure::BadBody(e)),
        };
        let Some(held) = current else {
            return FetchOutcome::Failed(FetchFailure::Garbage);
        };
        if delta.to_version() == held.version() && delta.entries().is_empty() {
            return FetchOutcome::Unchanged;
        }
        let mut next = held.clone();
        match next.apply(&delta) {
            Ok(()) => FetchOutcome::Updated(next),
            Err(e) => FetchOutcome::Failed(FetchFailure::DeltaMismatch(e)),
        }
    } else {
        FetchOutcome::Failed(FetchFailure::Garbage)
    }
}

/// A callout in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// The token `dispatch_http_call` returned.
    pub token: u32,
    /// What was asked.
    pub kind: FetchKind,
    /// When it was sent, milliseconds since the epoch.
    pub dispatched_ms: u64,
    /// When it counts as unanswered, milliseconds since the epoch.
    pub deadline_ms: u64,
}

/// The fetching schedule of one root context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetcher {
    next_due_ms: u64,
    in_flight: Option<InFlight>,
    force_full: bool,
    /// Failures since the last good answer.
    pub consecutive_failures: u32,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new()
    }
}

/// Retry delay while no registry exists at all, milliseconds.
const BOOTSTRAP_RETRY_MS: u64 = 1_000;
/// Extra time past the callout timeout before a callout counts as unanswered
/// (Envoy answers a timed-out callout itself; this covers a host that never does).
const ANSWER_GRACE_MS: u64 = 1_000;

impl Fetcher {
    /// Due at once.
    pub fn new() -> Self {
        Fetcher {
            next_due_ms: 0,
            in_flight: None,
            force_full: false,
            consecutive_failures: 0,
        }
    }

    /// The callout in flight, if any.
    pub fn in_flight(&self) -> Option<InFlight> {
        self.in_flight
    }

    /// What to fetch now, if anything: nothing while a callout is in flight
    /// or before the next due time.
    pub fn due(&self, now_ms: u64, held_version: Option<u64>) -> Option<FetchKind> {
        if self.in_flight.is_some() || now_ms < self.next_due_ms {
            return None;
        }
        Some(match held_version {
            Some(since) if !self.force_full => FetchKind::Delta { since },
            have => FetchKind::Full { have },
        })
    }

    /// Records a dispatched callout.
    pub fn started(&mut self, token: u32, kind: FetchKind, now_ms: u64, curator: &CuratorConfig) {
        self.in_flight = Some(InFlight {
            token,
            kind,
            dispatched_ms: now_ms,
            deadline_ms: now_ms
                .saturating_add(curator.timeout_ms)
                .saturating_add(ANSWER_GRACE_MS),
        });
    }

    /// Whether `token` is the callout in flight.
    pub fn is_current(&self, token: u32) -> bool {
        self.in_flight.is_some_and(|f| f.token == token)
    }

    /// Records the end of the callout in flight (an answer, a dispatch
    /// failure or a lapsed deadline) and schedules the next one.
    pub fn finished(
        &mut self,
        failure: Option<&FetchFailure>,
        now_ms: u64,
        have_registry: bool,
        curator: &CuratorConfig,
    ) {
        // After an answer, the next fetch is due one interval after this one
        // was *sent*: counting from the answer would make a tick that comes
        // exactly one interval later find it not yet due, and halve the rate.
        let mut base_ms = self
            .in_flight
            .take()
            .map_or(now_ms, |f| f.dispatched_ms.min(now_ms));
        let mut delay = curator.refresh_interval_ms;
        match failure {
            None => {
                self.consecutive_failures = 0;
                self.force_full = false;
            }
            Some(failure) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                // A delta that did not apply, or a curator that does not
                // know `since`: start over from a full snapshot.
                self.force_full = matches!(
                    failure,
                    FetchFailure::DeltaMismatch(_)
                        | FetchFailure::Status(400..=499)
                        | FetchFailure::Garbage
                        | FetchFailure::BadBody(_)
                );
                // Back off from the failure itself, not from the attempt.
                base_ms = now_ms;
                if !have_registry {
                    delay = delay.min(BOOTSTRAP_RETRY_MS);
                }
            }
        }
        self.next_due_ms = base_ms.saturating_add(delay);
    }

    /// If the callout in flight passed its deadline, forgets it and returns
    /// true (the caller records a [`FetchFailure::NoAnswer`]).
    pub fn lapsed(&self, now_ms: u64) -> bool {
        self.in_flight.is_some_and(|f| now_ms >= f.deadline_ms)
    }

    /// Makes the next tick fetch (e.g. after taking over the lease).
    pub fn due_now(&mut self) {
        self.next_due_ms = 0;
    }
}

#[cfg(test)]
mod tests;
