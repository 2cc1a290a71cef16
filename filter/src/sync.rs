//! Keeping the registry current: what to ask the curator, what its answers
//! mean, and how the copy is shared between the VMs of one Envoy.
//!
//! One root context at a time (the holder of a lease in shared data) follows
//! the log: every refresh interval it asks for the newest witnessed
//! checkpoint (`GET /v1/checkpoint`), and when that is larger than the log
//! it follows, for the records up to it (`GET /v1/log/records?start=&end=`,
//! page by page), which [`crate::transparency::Follower`] applies only if
//! they give the checkpoint's root. It publishes the derived snapshot, the
//! accepted checkpoint and a small status record in shared data; every root
//! context (one per worker VM) polls the status on its tick and decodes the
//! snapshot when the version moved. Any failure keeps the last good copy;
//! the failure is counted and logged by the caller.

use alloc::string::String;
use alloc::vec::Vec;

use crate::config::CuratorConfig;
use crate::transparency::Refusal;

/// The path of the newest witnessed checkpoint.
pub const CHECKPOINT_PATH: &str = "/v1/checkpoint";
/// The path of the log's records (`?start=S&end=E`).
pub const RECORDS_PATH: &str = "/v1/log/records";
/// The path of the follower state at a checkpoint's size (`?size=N`).
pub const STATE_PATH: &str = "/v1/log/state";

/// The shared-data keys of one registry source.
///
/// Istio gives every WasmPlugin of a proxy the same (empty) `vm_id`, so all
/// of them share one shared-data namespace. The keys therefore name
/// everything that decides which registry a plugin may install: the curator
/// cluster and authority it asks, the checkpoint key of the log, and the
/// witness policy (witness keys and quorum) that decides which checkpoints
/// count. Two plugins share one copy only when all of these agree; a plugin
/// with a weaker policy (fewer witnesses, a lower quorum, none) never
/// publishes where a stricter one reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedKeys {
    /// The encoded snapshot.
    pub snapshot: String,
    /// [`RegistryStatus`]: version and the witnessed time confirming it.
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
    /// Keys for the registry behind `curator`: a hash of its trust
    /// configuration (see the type's documentation).
    pub fn new(curator: &CuratorConfig) -> Self {
        use sha2::{Digest as _, Sha256};
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        field(curator.cluster.as_bytes());
        field(curator.authority.as_bytes());
        field(curator.checkpoint_key.to_vkey().as_bytes());
        match &curator.witnesses {
            None => field(b"no witnesses"),
            Some(policy) => {
                let mut vkeys: Vec<String> = policy.witnesses.iter().map(|w| w.to_vkey()).collect();
                vkeys.sort_unstable();
                vkeys.dedup();
                field(&(policy.quorum as u64).to_be_bytes());
                for vkey in &vkeys {
                    field(vkey.as_bytes());
                }
            }
        }
        let digest = hash.finalize();
        let mut id = String::with_capacity(32);
        for byte in &digest[..16] {
            id.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            id.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
        }
        let base = format!("mazu.registry.v3|{id}");
        SharedKeys {
            snapshot: format!("{base}|snapshot"),
            status: format!("{base}|status"),
            lease: format!("{base}|lease"),
            instances: format!("{base}|instances"),
            checkpoint: format!("{base}|checkpoint"),
        }
    }
}

/// What the fetching root publishes beside the snapshot: the version it holds,
/// the witnessed time of the newest checkpoint that confirmed it, and the
/// SHA-256 of the encoded snapshot of that version.
///
/// The snapshot and the status are two shared-data entries, written one after
/// the other (the snapshot first), so a reader can meet a snapshot that is not
/// the status's (a torn publish, or another root's write between the two). A
/// reader installs a snapshot only if its bytes hash to `snapshot_sha256` and
/// it decodes to `version` ([`snapshot_matches`]), once per status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryStatus {
    /// The snapshot version in shared data (the log size it derives from).
    pub version: u64,
    /// The witnessed time of the newest checkpoint of that size,
    /// milliseconds since the epoch (without witnesses: when the curator
    /// served it).
    pub confirmed_ms: u64,
    /// SHA-256 of the encoded snapshot of `version`.
    pub snapshot_sha256: [u8; 32],
}

impl RegistryStatus {
    /// 48 bytes: version then confirmation time, big-endian, then the digest.
    pub fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..16].copy_from_slice(&encode_two_u64(self.version, self.confirmed_ms));
        out[16..].copy_from_slice(&self.snapshot_sha256);
        out
    }

    /// Decodes [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 48] = bytes.try_into().ok()?;
        let (head, digest) = bytes.split_at(16);
        let (version, confirmed) = two_u64(head)?;
        Some(RegistryStatus {
            version,
            confirmed_ms: confirmed,
            snapshot_sha256: digest.try_into().ok()?,
        })
    }
}

/// SHA-256 of an encoded snapshot, as [`RegistryStatus::snapshot_sha256`].
pub fn snapshot_sha256(encoded: &[u8]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(encoded).into()
}

/// Whether `encoded` (read from shared data) is the snapshot `status`
/// announces: same digest. (Its version is checked after decoding.)
pub fn snapshot_matches(status: &RegistryStatus, encoded: &[u8]) -> bool {
    snapshot_sha256(encoded) == status.snapshot_sha256
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
    /// The newest witnessed checkpoint.
    Checkpoint,
    /// The follower state at the checkpoint size `size`.
    State {
        /// The checkpoint's size.
        size: u64,
    },
    /// The records `start..end`.
    Records {
        /// First record.
        start: u64,
        /// One past the last record.
        end: u64,
    },
}

/// One callout: path and headers (pseudo-headers included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// What is asked.
    pub kind: FetchKind,
    /// `(name, value)` pairs for `dispatch_http_call`.
    pub headers: Vec<(String, String)>,
}

impl FetchRequest {
    /// The request for `kind` against `curator`.
    pub fn new(curator: &CuratorConfig, kind: FetchKind) -> Self {
        let (path, accept) = match kind {
            FetchKind::Checkpoint => (CHECKPOINT_PATH.to_owned(), "text/plain"),
            FetchKind::State { size } => (
                format!("{STATE_PATH}?size={size}"),
                "application/octet-stream",
            ),
            FetchKind::Records { start, end } => (
                format!("{RECORDS_PATH}?start={start}&end={end}"),
                "application/octet-stream",
            ),
        };
        let headers = vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), path),
            (":authority".to_owned(), curator.authority.clone()),
            ("accept".to_owned(), accept.to_owned()),
        ];
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
    /// An HTTP status other than 200.
    Status(u16),
    /// A body larger than `curator.max_body_bytes`.
    TooLarge(usize),
    /// The checkpoint or the records were refused: the curator's log is
    /// not the one the witnesses vouch for, or not the one accepted before.
    Refused(Refusal),
}

impl FetchFailure {
    /// A stable name for metrics and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            FetchFailure::Dispatch => "dispatch",
            FetchFailure::NoAnswer => "no_answer",
            FetchFailure::Status(_) => "http_status",
            FetchFailure::TooLarge(_) => "too_large",
            FetchFailure::Refused(refusal) => refusal.as_str(),
        }
    }

    /// Whether the failure is evidence against the curator (rather than an
    /// outage): logged as possible misbehaviour.
    pub const fn is_refusal(&self) -> bool {
        matches!(self, FetchFailure::Refused(_))
    }

    /// Every [`as_str`](Self::as_str) name, for defining metrics up front.
    pub const ALL_NAMES: [&'static str; 4 + Refusal::ALL_NAMES.len()] = {
        let mut names = [""; 4 + Refusal::ALL_NAMES.len()];
        names[0] = "dispatch";
        names[1] = "no_answer";
        names[2] = "http_status";
        names[3] = "too_large";
        let mut i = 0;
        while i < Refusal::ALL_NAMES.len() {
            names[4 + i] = Refusal::ALL_NAMES[i];
            i += 1;
        }
        names
    };
}

impl core::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FetchFailure::Dispatch => f.write_str("the callout could not be dispatched"),
            FetchFailure::NoAnswer => f.write_str("no answer (timeout or reset)"),
            FetchFailure::Status(status) => write!(f, "HTTP status {status}"),
            FetchFailure::TooLarge(len) => write!(f, "body of {len} bytes is over the limit"),
            FetchFailure::Refused(refusal) => write!(f, "refused: {refusal}"),
        }
    }
}

/// Whether an answer's status lets its body be used: only a 200 does.
pub fn check_status(status: Option<u16>) -> Result<(), FetchFailure> {
    match status {
        None => Err(FetchFailure::NoAnswer),
        Some(200) => Ok(()),
        Some(other) => Err(FetchFailure::Status(other)),
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
    /// When the current round (its checkpoint callout) was sent.
    round_started_ms: Option<u64>,
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
            round_started_ms: None,
            consecutive_failures: 0,
        }
    }

    /// The callout in flight, if any.
    pub fn in_flight(&self) -> Option<InFlight> {
        self.in_flight
    }

    /// Whether a new round (a checkpoint callout) is due now: not while a
    /// callout is in flight nor before the next due time.
    pub fn due(&self, now_ms: u64) -> bool {
        self.in_flight.is_none() && now_ms >= self.next_due_ms
    }

    /// Records a dispatched callout (a checkpoint starts a round, records
    /// continue it).
    pub fn started(&mut self, token: u32, kind: FetchKind, now_ms: u64, curator: &CuratorConfig) {
        if kind == FetchKind::Checkpoint {
            self.round_started_ms = Some(now_ms);
        }
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

    /// Records that the callout in flight was answered and the round goes
    /// on with another callout (the next page of records).
    pub fn answered(&mut self) {
        self.in_flight = None;
    }

    /// Records the end of a round (its last answer, a dispatch failure or a
    /// lapsed deadline) and schedules the next one.
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
        self.in_flight = None;
        let mut base_ms = self
            .round_started_ms
            .take()
            .map_or(now_ms, |sent| sent.min(now_ms));
        let mut delay = curator.refresh_interval_ms;
        match failure {
            None => {
                self.consecutive_failures = 0;
            }
            Some(_) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
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
