//! Following the curator's witnessed log: the registry is derived from the
//! log's leaf records, never taken from the curator's word.
//!
//! One round: the newest checkpoint (`GET /v1/checkpoint`) is verified — the
//! curator's signature with the pinned key and a quorum of the configured
//! witnesses' cosignatures ([`verify_checkpoint`]) — and offered to the
//! [`Follower`]. If it is larger than the log already followed, the records
//! from the follower's size up to it are fetched page by page and applied
//! with [`LogFollower::extend`]: all or nothing, and only if their leaves
//! give the checkpoint's root. So the registry a filter installs
//! ([`Follower::snapshot`]) is the one the witnessed log yields:
//!
//! - a curator that serves records other than the ones it logged (say,
//!   the victim's id first bound to an attacker's key) fails the root;
//! - a curator that shows this proxy a log the witnesses did not see fails
//!   the quorum (honest witnesses cosign one append-only history);
//! - a checkpoint smaller than the one accepted, or of the same size with
//!   another root, is a rollback or a fork and is refused;
//! - a curator that freezes (serves the same old checkpoint) cannot keep
//!   the registry fresh: its age counts from the witnessed time (the
//!   quorum-th newest cosignature timestamp).
//!
//! **Bootstrap from a witnessed state.** A follower at the empty log (a new
//! VM) whose checkpoint carries a state line (`mazu-state-sha256`) asks for
//! that state (`GET /v1/log/state?size=N`) instead of the whole history, and
//! installs it only if it hashes to the line, decodes, and has the
//! checkpoint's size and root (its Merkle frontier) and no clock past the
//! witnessed time ([`Follower::offer_state`]). The line is the curator's;
//! what makes it trustworthy is the witness quorum: a `mazu-witness`
//! cosigns a state line only after deriving the same state from the records
//! itself (`docs/witness.md`). So a filter trusts the witnesses'
//! derivation, as it trusts their view of the log. Bootstrap then costs what
//! the live registrations weigh, not the history. If the state cannot be
//! had (not kept any more, over the body limit, an outage) the follower
//! falls back to the records in the same round; if it is refused (evidence
//! against the curator), the follower uses records only from then on.

use alloc::vec::Vec;
use core::fmt;

use mazu_identity::RegistrySnapshot;
use mazu_identity::registry::derive::MAX_CLOCK_SKEW_MS;
use mazu_identity::registry::{FollowError, LogFollower, StateSummary, StateWalker, VoidRecord};
use mazu_log::evidence::state_digest;
use mazu_log::merkle::Hash;
use mazu_log::record::{LeafRecord, MAX_RECORD_LEN, RecordError, decode_records};
use mazu_log::{CheckpointVerifier, CosignatureError, NoteError, WitnessPolicy};
use sha2::{Digest as _, Sha256};

/// The most records the curator serves in one page.
pub const SERVER_PAGE_RECORDS: u64 = 16_384;

/// A checkpoint whose signature and witness quorum verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Merkle root of the first `size` records.
    pub root: Hash,
    /// The witnessed time, Unix seconds; `None` without witnesses
    /// (`insecure_no_witness`), when the caller's clock stands in.
    pub witnessed_secs: Option<u64>,
    /// The digest of the follower state after these records, from the
    /// checkpoint's state line (`None` without one, or a malformed one).
    pub state: Option<Hash>,
}

/// A checkpoint a VM accepted (from its own round, or verified from shared
/// data): the tree size, its root, and when it was witnessed (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptedCheckpoint {
    /// Tree size (= the version of the registry derived from it).
    pub size: u64,
    /// Merkle root of the first `size` records.
    pub root: Hash,
    /// Witnessed time (or answer time without witnesses), milliseconds.
    pub witnessed_ms: u64,
}

/// Why a checkpoint or a page of records was refused. The registry held
/// stays in force.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The note is malformed or not signed by the pinned curator key.
    Signature(NoteError),
    /// Fewer configured witnesses cosigned than the quorum.
    BelowQuorum {
        /// Distinct configured witnesses with a valid cosignature.
        found: usize,
        /// The quorum.
        quorum: usize,
    },
    /// A line claims a configured witness but does not verify.
    BadCosignature(CosignatureError),
    /// The checkpoint is smaller than one accepted before.
    Rollback {
        /// The size accepted before.
        held: u64,
        /// The size offered.
        offered: u64,
    },
    /// Same size as one accepted before, another root: a forked log.
    Fork {
        /// The size.
        size: u64,
    },
    /// A records answer that does not decode.
    RecordsUndecodable(RecordError),
    /// A records answer with no records, or more than asked for.
    RecordsCount {
        /// Records asked for.
        asked: u64,
        /// Records given.
        given: u64,
    },
    /// The records do not give the checkpoint's root: not the log the
    /// witnesses saw (a rebound id, a dropped or reordered record).
    RecordsRootMismatch {
        /// The checkpoint's size.
        size: u64,
    },
    /// A record is timed after the checkpoint's witnessed time (plus the
    /// allowed skew): a curator moving the registry's clock ahead, so that
    /// revoked ids whose tokens are still valid would be forgotten.
    RecordsFromTheFuture {
        /// The record's index.
        index: u64,
    },
    /// The state served does not hash to the checkpoint's state line.
    StateDigestMismatch {
        /// The checkpoint's size.
        size: u64,
    },
    /// The state served hashes to the line but does not decode.
    StateUndecodable,
    /// The state hashes to the line but its size, root or clock is not the
    /// checkpoint's: the witnesses that cosigned the line did not check it.
    StateInconsistent {
        /// The checkpoint's size.
        size: u64,
    },
}

impl Refusal {
    /// A stable name for metrics and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Refusal::Signature(_) => "checkpoint_signature",
            Refusal::BelowQuorum { .. } => "checkpoint_below_quorum",
            Refusal::BadCosignature(_) => "checkpoint_bad_cosignature",
            Refusal::Rollback { .. } => "checkpoint_rollback",
            Refusal::Fork { .. } => "checkpoint_fork",
            Refusal::RecordsUndecodable(_) => "records_undecodable",
            Refusal::RecordsCount { .. } => "records_count",
            Refusal::RecordsRootMismatch { .. } => "records_root_mismatch",
            Refusal::RecordsFromTheFuture { .. } => "records_from_the_future",
            Refusal::StateDigestMismatch { .. } => "state_digest_mismatch",
            Refusal::StateUndecodable => "state_undecodable",
            Refusal::StateInconsistent { .. } => "state_inconsistent",
        }
    }

    /// Every [`as_str`](Self::as_str) name.
    pub const ALL_NAMES: [&'static str; 12] = [
        "checkpoint_signature",
        "checkpoint_below_quorum",
        "checkpoint_bad_cosignature",
        "checkpoint_rollback",
        "checkpoint_fork",
        "records_undecodable",
        "records_count",
        "records_root_mismatch",
        "records_from_the_future",
        "state_digest_mismatch",
        "state_undecodable",
        "state_inconsistent",
    ];
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Signature(e) => {
                write!(f, "the checkpoint does not verify with the pinned key: {e}")
            }
            Refusal::BelowQuorum { found, quorum } => write!(
                f,
                "the checkpoint is cosigned by {found} of the required {quorum} witnesses"
            ),
            Refusal::BadCosignature(e) => write!(f, "{e}"),
            Refusal::Rollback { held, offered } => write!(
                f,
                "checkpoint of size {offered} is older than the accepted size {held} (rollback)"
            ),
            Refusal::Fork { size } => write!(
                f,
                "checkpoint of size {size} has another root than the one accepted at that size (forked log)"
            ),
            Refusal::RecordsUndecodable(e) => write!(f, "undecodable log records: {e}"),
            Refusal::RecordsCount { asked, given } => {
                write!(f, "{given} log records answered for {asked} asked")
            }
            Refusal::RecordsRootMismatch { size } => write!(
                f,
                "the log records do not give the root of the witnessed checkpoint of size {size}"
            ),
            Refusal::RecordsFromTheFuture { index } => write!(
                f,
                "log record {index} is timed after the checkpoint's witnessed time (a curator moving the clock ahead)"
            ),
            Refusal::StateDigestMismatch { size } => write!(
                f,
                "the follower state served for size {size} does not hash to the witnessed checkpoint's state line"
            ),
            Refusal::StateUndecodable => {
                f.write_str("the follower state hashes to the state line but does not decode")
            }
            Refusal::StateInconsistent { size } => write!(
                f,
                "the follower state of the witnessed line does not have the size, root or clock of the checkpoint of size {size}"
            ),
        }
    }
}

/// Verifies a checkpoint note: the curator's signature, then (with a
/// policy) the witness quorum and the witnessed time.
pub fn verify_checkpoint(
    key: &CheckpointVerifier,
    witnesses: Option<&WitnessPolicy>,
    note: &[u8],
) -> Result<VerifiedCheckpoint, Refusal> {
    let checkpoint = key.verify(note).map_err(Refusal::Signature)?;
    let witnessed_secs = match witnesses {
        None => None,
        Some(policy) => match policy.check(note) {
            Ok(witnessed) => Some(witnessed.timestamp),
            Err(CosignatureError::BelowQuorum { found, quorum }) => {
                return Err(Refusal::BelowQuorum { found, quorum });
            }
            Err(CosignatureError::Note(e)) => return Err(Refusal::Signature(e)),
            Err(e) => return Err(Refusal::BadCosignature(e)),
        },
    };
    Ok(VerifiedCheckpoint {
        size: checkpoint.size,
        root: checkpoint.root,
        witnessed_secs,
        // A malformed line gives no state: the records still work.
        state: state_digest(&checkpoint).ok().flatten(),
    })
}

/// Checks a follower state against a verified checkpoint witnessed at
/// `witnessed_ms` (Unix ms): it must hash to the checkpoint's state line,
/// decode, and have the checkpoint's size and root and no clock past the
/// witnessed time. Gives the follower, to go on following the log from.
pub fn verify_state(
    checkpoint: &VerifiedCheckpoint,
    witnessed_ms: u64,
    body: &[u8],
) -> Result<LogFollower, Refusal> {
    check_state_digest(checkpoint, body)?;
    let log = LogFollower::decode_state(body).map_err(|_| Refusal::StateUndecodable)?;
    check_state_header(
        checkpoint,
        witnessed_ms,
        (log.size(), log.root(), log.registry().clock_ms()),
    )?;
    Ok(log)
}

/// [`verify_state`]'s checks on a state read in pieces, for a VM that only
/// decides with the registry (it reads what another VM fetched from shared
/// data and never holds the state): give it the header, then the entries in
/// runs, in order. A refusal is the first check that failed, in
/// [`verify_state`]'s order: the digest, then the decoding, then the size,
/// root and clock.
pub struct StateCheck<'a> {
    checkpoint: &'a VerifiedCheckpoint,
    witnessed_ms: u64,
    digest: Sha256,
    /// The decoding so far; `None` before the header, or once it failed
    /// (the digest is still computed, to be reported first).
    walker: Option<StateWalker>,
    undecodable: bool,
}

impl<'a> StateCheck<'a> {
    /// A check of the state of `checkpoint`, witnessed at `witnessed_ms`.
    pub fn new(checkpoint: &'a VerifiedCheckpoint, witnessed_ms: u64) -> Self {
        StateCheck {
            checkpoint,
            witnessed_ms,
            digest: Sha256::new(),
            walker: None,
            undecodable: false,
        }
    }

    /// The state's header (everything before its entries).
    pub fn header(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
        match StateWalker::start(bytes) {
            Ok(walker) if self.walker.is_none() && !self.undecodable => self.walker = Some(walker),
            _ => self.fail(),
        }
    }

    /// The next run of whole entries.
    pub fn entries(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
        let walked = match self.walker.as_mut() {
            Some(walker) => walker.entries(bytes, |_, _| {}).is_ok(),
            None => false,
        };
        if !walked {
            self.fail();
        }
    }

    /// What to refuse the state with when its pieces cannot be read as
    /// pieces of this state (a piece of another version): its digest
    /// does not match.
    pub fn mismatch(&self) -> Refusal {
        Refusal::StateDigestMismatch {
            size: self.checkpoint.size,
        }
    }

    fn fail(&mut self) {
        self.walker = None;
        self.undecodable = true;
    }

    /// The verdict on all the pieces given.
    pub fn finish(self) -> Result<StateSummary, Refusal> {
        let digest: Hash = self.digest.finalize().into();
        if self.checkpoint.state != Some(digest) {
            return Err(Refusal::StateDigestMismatch {
                size: self.checkpoint.size,
            });
        }
        let summary = self
            .walker
            .ok_or(Refusal::StateUndecodable)?
            .finish()
            .map_err(|_| Refusal::StateUndecodable)?;
        check_state_header(
            self.checkpoint,
            self.witnessed_ms,
            (summary.size, summary.root, summary.clock_ms),
        )?;
        Ok(summary)
    }
}

fn check_state_digest(checkpoint: &VerifiedCheckpoint, body: &[u8]) -> Result<(), Refusal> {
    let digest: Hash = Sha256::digest(body).into();
    if checkpoint.state != Some(digest) {
        return Err(Refusal::StateDigestMismatch {
            size: checkpoint.size,
        });
    }
    Ok(())
}

/// A decoded state's size, root and clock against the checkpoint's.
fn check_state_header(
    checkpoint: &VerifiedCheckpoint,
    witnessed_ms: u64,
    (size, root, clock_ms): (u64, Hash, u64),
) -> Result<(), Refusal> {
    let latest = witnessed_ms.saturating_add(MAX_CLOCK_SKEW_MS);
    if size != checkpoint.size || root != checkpoint.root || clock_ms > latest {
        return Err(Refusal::StateInconsistent {
            size: checkpoint.size,
        });
    }
    Ok(())
}

/// What to do after a checkpoint or a page was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The checkpoint is the one followed (same size and root): the registry
    /// is confirmed as of its witnessed time.
    Current,
    /// Fetch the follower state at the checkpoint's size next
    /// ([`Follower::offer_state`]).
    FetchState {
        /// The checkpoint's size.
        size: u64,
    },
    /// Fetch the records `start..end` next.
    Fetch {
        /// First record.
        start: u64,
        /// One past the last record.
        end: u64,
    },
    /// The records were applied: the registry is now the one derived from
    /// the checkpoint's log.
    Applied {
        /// Records that had no effect (an honest curator writes none).
        void: Vec<VoidRecord>,
    },
}

/// A target being fetched: the checkpoint and the records so far.
#[derive(Clone, Debug)]
struct Target {
    checkpoint: VerifiedCheckpoint,
    /// The checkpoint's witnessed time (or the clock without witnesses),
    /// Unix ms: no record may be timed later.
    witnessed_ms: u64,
    records: Vec<LeafRecord>,
}

/// The log as this VM follows it: a [`LogFollower`] plus the checkpoint
/// being caught up to.
#[derive(Clone, Debug)]
pub struct Follower {
    log: LogFollower,
    target: Option<Target>,
    page: u64,
    /// Whether a state was refused: from then on, records only.
    state_refused: bool,
}

impl Follower {
    /// A follower at the empty log, asking for at most `page` records at a
    /// time (capped at the server's page and at what fits `max_body_bytes`).
    pub fn new(max_body_bytes: usize) -> Self {
        let fits = (max_body_bytes / MAX_RECORD_LEN).max(1) as u64;
        Follower {
            log: LogFollower::new(),
            target: None,
            page: fits.min(SERVER_PAGE_RECORDS),
            state_refused: false,
        }
    }

    /// Records applied.
    pub fn size(&self) -> u64 {
        self.log.size()
    }

    /// The root of the records applied.
    pub fn root(&self) -> Hash {
        self.log.root()
    }

    /// The registry derived from the records applied (version = size).
    pub fn snapshot(&self) -> RegistrySnapshot {
        self.log.registry().snapshot()
    }

    /// The follower state of the records applied (what a checkpoint's state
    /// line commits to), for the other VMs of this Envoy.
    pub fn encode_state(&self) -> Vec<u8> {
        self.log.encode_state()
    }

    /// Takes a verified checkpoint, witnessed at `witnessed_ms` (Unix ms;
    /// the filter's clock without witnesses). `accepted` is the newest
    /// checkpoint this VM installed (a leader that starts from
    /// the empty log still refuses to go behind it). Any records being
    /// fetched for an earlier checkpoint are dropped.
    pub fn offer_checkpoint(
        &mut self,
        checkpoint: VerifiedCheckpoint,
        accepted: Option<AcceptedCheckpoint>,
        witnessed_ms: u64,
    ) -> Result<Step, Refusal> {
        self.target = None;
        let mut held = (self.size(), self.root());
        if let Some(accepted) = accepted
            && accepted.size > held.0
        {
            held = (accepted.size, accepted.root);
        }
        let (size, root) = held;
        if checkpoint.size < size {
            return Err(Refusal::Rollback {
                held: size,
                offered: checkpoint.size,
            });
        }
        if checkpoint.size == size && checkpoint.root != root {
            return Err(Refusal::Fork { size });
        }
        if checkpoint.size == self.size() {
            return Ok(Step::Current);
        }
        self.target = Some(Target {
            checkpoint,
            witnessed_ms,
            records: Vec::new(),
        });
        if self.size() == 0 && checkpoint.state.is_some() && !self.state_refused {
            return Ok(Step::FetchState {
                size: checkpoint.size,
            });
        }
        Ok(self.next_page())
    }

    /// Takes the answer to [`Step::FetchState`]: installs the state if it
    /// hashes to the checkpoint's state line and has its size, root and no
    /// later clock. A refusal drops the target, changes nothing, and makes
    /// this follower use records only.
    pub fn offer_state(&mut self, size: u64, body: &[u8]) -> Result<Step, Refusal> {
        let Some(target) = self.target.take_if(|t| t.checkpoint.size == size) else {
            // An answer for an earlier round.
            return Ok(Step::Current);
        };
        let result = verify_state(&target.checkpoint, target.witnessed_ms, body);
        match result {
            Ok(log) if self.size() == 0 => {
                self.log = log;
                Ok(Step::Applied { void: Vec::new() })
            }
            Ok(_) => Ok(Step::Current),
            Err(refusal) => {
                self.state_refused = true;
                Err(refusal)
            }
        }
    }

    /// The state asked for could not be had (not kept any more, over the
    /// body limit, an outage): fetch the records instead, in this round.
    pub fn state_unavailable(&mut self) -> Step {
        self.next_page()
    }

    /// The page to fetch next for the target (the follower's size plus what
    /// was received, up to the checkpoint's size).
    fn next_page(&self) -> Step {
        let Some(target) = &self.target else {
            return Step::Current;
        };
        let start = self.size() + target.records.len() as u64;
        let end = target.checkpoint.size.min(start.saturating_add(self.page));
        Step::Fetch { start, end }
    }

    /// Takes the answer to the page `start..end` (the records concatenated).
    /// When the last page is in, applies every record of the target at once;
    /// a refusal drops the target and changes nothing.
    pub fn offer_records(&mut self, start: u64, end: u64, body: &[u8]) -> Result<Step, Refusal> {
        let result = self.take_records(start, end, body);
        if result.is_err() {
            self.target = None;
        }
        result
    }

    fn take_records(&mut self, start: u64, end: u64, body: &[u8]) -> Result<Step, Refusal> {
        let expected = match self.next_page() {
            Step::Fetch { start, end } => (start, end),
            _ => return Ok(Step::Current),
        };
        if (start, end) != expected {
            // An answer to a page of an earlier round: not this one's.
            return Ok(self.next_page());
        }
        let records = decode_records(body).map_err(Refusal::RecordsUndecodable)?;
        let asked = end - start;
        let given = records.len() as u64;
        // The server may answer a shorter page than asked (its own cap);
        // an empty one would never finish.
        if given == 0 || given > asked {
            return Err(Refusal::RecordsCount { asked, given });
        }
        let applied = self.size();
        let Some(target) = self.target.as_mut() else {
            return Ok(Step::Current);
        };
        target.records.extend(records);
        if applied + (target.records.len() as u64) < target.checkpoint.size {
            return Ok(self.next_page());
        }
        let Some(target) = self.target.take() else {
            return Ok(Step::Current);
        };
        let checkpoint = target.checkpoint;
        match self.log.extend(
            &target.records,
            checkpoint.size,
            &checkpoint.root,
            target.witnessed_ms,
        ) {
            Ok(void) => Ok(Step::Applied { void }),
            Err(FollowError::Rollback {
                applied,
                checkpoint,
            }) => Err(Refusal::Rollback {
                held: applied,
                offered: checkpoint,
            }),
            Err(FollowError::WrongCount { given, .. }) => Err(Refusal::RecordsCount {
                asked: checkpoint.size.saturating_sub(self.size()),
                given,
            }),
            Err(FollowError::FromTheFuture { index, .. }) => {
                Err(Refusal::RecordsFromTheFuture { index })
            }
            Err(_) => Err(Refusal::RecordsRootMismatch {
                size: checkpoint.size,
            }),
        }
    }

    /// The checkpoint being fetched, if any.
    pub fn target(&self) -> Option<VerifiedCheckpoint> {
        self.target.as_ref().map(|t| t.checkpoint)
    }
}

#[cfg(test)]
mod tests;
