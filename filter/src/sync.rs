//! Keeping the registry current: what to ask the curator and what its
//! answers mean.
//!
//! One root context at a time (the holder of a lease in shared data) follows
//! the log: every refresh interval it asks for the newest witnessed
//! checkpoint (`GET /v1/checkpoint`), and when that is larger than the log
//! it follows, for the records up to it (`GET /v1/log/records?start=&end=`,
//! page by page), which [`crate::transparency::Follower`] applies only if
//! they give the checkpoint's root. It publishes the verified checkpoint and the follower state in shared data, where every
//! root context (one per worker VM) verifies and installs them
//! ([`crate::shared`]). Any failure keeps the last good copy; the failure is
//! counted and logged by the caller.

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
