//! The witness itself: C2SP `tlog-witness` `add-checkpoint`, without HTTP,
//! and Mazu's extension for checkpoints that carry a state line.
//!
//! The checks of [`Witness::add_checkpoint`], in the spec's order (each
//! with the status it maps to):
//!
//! 1. the body is an `add-checkpoint` body and the note a checkpoint (400);
//! 2. the origin is a configured log (404);
//! 3. the log's key signed it (403; signatures of other keys are ignored);
//! 4. the checkpoint carries no `mazu-state-sha256` line (400: such a
//!    checkpoint must carry its records, see below);
//! 5. `old <= size` (400: in particular a checkpoint smaller than the stored
//!    one sent with the stored size, a rollback);
//! 6. under the log's lock: `old` equals the stored size (0 if none), else
//!    409 with the stored size;
//! 7. if `old == size`: the root equals the stored root, else 409 (a fork:
//!    logged as `FORK`, both notes kept in `evidence/`);
//! 8. the consistency proof from (stored size, stored root) to (size, root)
//!    verifies (422; the proof must be empty from 0);
//! 9. store the new state durably (if it changed), cosign it with the
//!    current time and release the lock: checking and storing are one
//!    atomic step, so two requests cannot both advance from one size.
//!
//! **State lines.** A checkpoint's `mazu-state-sha256` line
//! ([`mazu_log::evidence::state_extension`]) commits to the registry
//! follower state after its records; filters bootstrap from that state
//! because a witness quorum cosigned it. So this witness cosigns a state
//! line only if it derived the same state itself:
//! [`Witness::add_checkpoint_with_records`] (`POST /mazu/v1/add-checkpoint`,
//! [`mazu_log::witness_protocol::split_with_records`]) takes the
//! `add-checkpoint` body and the leaf records from the stored size to the
//! checkpoint's, runs checks 1–3 and 5–8, and then, still under the lock:
//!
//! - the checkpoint carries a state line (400), the records decode (400);
//! - the witness holds the log's follower at the stored size (500 if not:
//!   its follower was dropped or lost, see below);
//! - the records extend the follower to the checkpoint
//!   ([`LogFollower::extend`]: their count, their leaves giving the root, no
//!   record timed after the witness's clock plus the allowed skew) (422);
//! - the derived state's digest equals the line (422, logged at error level
//!   as `CURATOR MISBEHAVIOUR?`, the note kept in `evidence/`);
//!
//! then stores the checkpoint and the new follower state in one atomic
//! write ([`crate::store`]) and cosigns.
//!
//! The follower is kept per log beside the stored checkpoint, always at its
//! size. When [`Witness::add_checkpoint`] advances the size (no records),
//! the follower cannot follow: it is dropped (and no longer stored), and
//! state lines of that log are refused from then on. A witness whose
//! follower is lost must be re-initialised (new data directory and key).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use mazu_identity::registry::{FollowError, LogFollower};
use mazu_log::checkpoint::{Checkpoint, CheckpointVerifier, Note, NoteError};
use mazu_log::cosignature::CosignatureSigner;
use mazu_log::evidence::state_digest;
use mazu_log::merkle::verify_consistency;
use mazu_log::record::decode_records;
use mazu_log::witness_protocol::{AddCheckpointRequest, ProtocolError, split_with_records};

use crate::store::{LogState, Store, StoreError, StoredFollower};

/// Why `add-checkpoint` did not cosign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The body is not an `add-checkpoint` body (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The origin is not a configured log (404).
    #[error("unknown origin {0:?}")]
    UnknownOrigin(String),
    /// No valid signature by the log's key (403).
    #[error("the checkpoint of {origin} carries no valid signature by its log key: {reason}")]
    Forbidden {
        /// The origin.
        origin: String,
        /// Why.
        reason: NoteError,
    },
    /// A checkpoint with a state line sent to the standard
    /// `/add-checkpoint`, without its records (400).
    #[error(
        "the checkpoint of {origin} carries a mazu-state-sha256 line, which this witness cosigns \
         only after deriving the state itself: it must carry its records at /mazu/v1/add-checkpoint"
    )]
    NeedsRecords {
        /// The origin.
        origin: String,
    },
    /// A checkpoint without a state line sent to `/mazu/v1/add-checkpoint`
    /// (400).
    #[error(
        "the checkpoint of {origin} carries no mazu-state-sha256 line: send it to /add-checkpoint"
    )]
    NoStateLine {
        /// The origin.
        origin: String,
    },
    /// The old size exceeds the checkpoint's size (400).
    #[error("old size {old} is above the checkpoint size {size} of {origin}")]
    OldAboveSize {
        /// The origin.
        origin: String,
        /// The request's old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The old size is not the stored size (409 with the stored size).
    #[error("old size {old} is not the size {stored} the witness holds for {origin}")]
    SizeMismatch {
        /// The origin.
        origin: String,
        /// The request's old size.
        old: u64,
        /// The stored size.
        stored: u64,
    },
    /// Same size as stored, different root hash (409): a fork.
    #[error(
        "FORK: checkpoint of {origin} at size {size} has another root hash than the one cosigned"
    )]
    Fork {
        /// The origin.
        origin: String,
        /// The size.
        size: u64,
    },
    /// The consistency proof does not verify (422).
    #[error("the consistency proof of {origin} from {old} to {size} does not verify")]
    BadProof {
        /// The origin.
        origin: String,
        /// The old size.
        old: u64,
        /// The new size.
        size: u64,
    },
    /// The records do not extend the witness's follower to the checkpoint
    /// (422): wrong count, leaves that do not give the root, or a record
    /// from the future.
    #[error("the records of {origin} from {old} to {size} do not extend the log: {reason}")]
    BadRecords {
        /// The origin.
        origin: String,
        /// The old size.
        old: u64,
        /// The new size.
        size: u64,
        /// Why.
        reason: FollowError,
    },
    /// The state line is not the digest of the state the witness derived
    /// from the records (422): curator misbehaviour.
    #[error(
        "CURATOR MISBEHAVIOUR? the state line of {origin} at size {size} does not follow from the records"
    )]
    BadState {
        /// The origin.
        origin: String,
        /// The size.
        size: u64,
    },
    /// The witness does not hold the log's follower at its stored size, so
    /// it cannot verify state lines (500).
    #[error(
        "this witness does not hold the registry follower of {origin} at size {size} ({why}), so \
         it cannot verify state lines for this log; it must be re-initialised (new data \
         directory and key)"
    )]
    NoFollower {
        /// The origin.
        origin: String,
        /// The stored size.
        size: u64,
        /// Why the follower is absent.
        why: String,
    },
    /// The state could not be stored (500).
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// An internal failure (500).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl AddError {
    /// The HTTP status the spec prescribes.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_)
            | Self::OldAboveSize { .. }
            | Self::NeedsRecords { .. }
            | Self::NoStateLine { .. } => 400,
            Self::Forbidden { .. } => 403,
            Self::UnknownOrigin(_) => 404,
            Self::SizeMismatch { .. } | Self::Fork { .. } => 409,
            Self::BadProof { .. } | Self::BadRecords { .. } | Self::BadState { .. } => 422,
            Self::NoFollower { .. } | Self::Storage(_) | Self::Internal(_) => 500,
        }
    }

    /// A short label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownOrigin(_) => "unknown_origin",
            Self::Forbidden { .. } => "forbidden",
            Self::NeedsRecords { .. } => "needs_records",
            Self::NoStateLine { .. } => "no_state_line",
            Self::OldAboveSize { .. } => "old_above_size",
            Self::SizeMismatch { .. } => "conflict",
            Self::Fork { .. } => "fork",
            Self::BadProof { .. } => "bad_proof",
            Self::BadRecords { .. } => "bad_records",
            Self::BadState { .. } => "bad_state",
            Self::NoFollower { .. } => "no_follower",
            Self::Storage(_) | Self::Internal(_) => "internal",
        }
    }

    /// The origin concerned, if it is a configured one.
    pub fn known_origin(&self) -> Option<&str> {
        match self {
            Self::Forbidden { origin, .. }
            | Self::NeedsRecords { origin }
            | Self::NoStateLine { origin }
            | Self::OldAboveSize { origin, .. }
            | Self::SizeMismatch { origin, .. }
            | Self::Fork { origin, .. }
            | Self::BadProof { origin, .. }
            | Self::BadRecords { origin, .. }
            | Self::BadState { origin, .. }
            | Self::NoFollower { origin, .. } => Some(origin),
            _ => None,
        }
    }
}

/// A successful `add-checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigned {
    /// The log.
    pub origin: String,
    /// The request's old size.
    pub old_size: u64,
    /// The cosigned checkpoint's size.
    pub size: u64,
    /// Whether the stored state changed (a new size, or the first one).
    pub advanced: bool,
    /// The answer body: the cosignature line(s).
    pub body: String,
}

/// One log as the witness sees it (see [`Witness::logs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStatus {
    /// The origin.
    pub origin: String,
    /// The stored size (`None` if never cosigned).
    pub size: Option<u64>,
    /// Whether the witness holds the follower at that size, i.e. can verify
    /// state lines.
    pub follower: bool,
}

/// The registry follower of one log, at the stored size.
#[derive(Debug)]
enum Follower {
    /// At the stored size and root.
    Ready(LogFollower),
    /// Not held (why): state lines are refused.
    Absent(String),
}

/// What is behind a log's lock.
#[derive(Debug)]
struct Row {
    state: Option<LogState>,
    follower: Follower,
}

struct LogSlot {
    verifier: CheckpointVerifier,
    row: Mutex<Row>,
}

/// A witness: its key, its logs and their stored state.
pub struct Witness {
    signer: CosignatureSigner,
    logs: HashMap<String, LogSlot>,
    store: Store,
}

impl core::fmt::Debug for Witness {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Witness")
            .field("signer", &self.signer)
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The current POSIX time in seconds.
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// The current POSIX time in milliseconds.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The follower to use beside `state`, from what the store holds: the
/// empty follower if nothing was ever cosigned; the stored one if it decodes
/// and is at the stored size and root; otherwise absent, with why.
fn follower_at(state: Option<&LogState>, stored: StoredFollower) -> Follower {
    let Some(state) = state else {
        return Follower::Ready(LogFollower::new());
    };
    let bytes = match stored {
        StoredFollower::Encoded(bytes) => bytes,
        StoredFollower::Missing => {
            return Follower::Absent("no follower state is stored with the checkpoint".into());
        }
        StoredFollower::Unreadable => {
            return Follower::Absent("the stored follower state is not base64".into());
        }
    };
    match LogFollower::decode_state(&bytes) {
        Err(e) => Follower::Absent(format!("the stored follower state does not decode: {e}")),
        Ok(f) if f.size() != state.size || f.root() != state.root => Follower::Absent(format!(
            "the stored follower state is at size {}, not at the stored checkpoint",
            f.size()
        )),
        Ok(f) => Follower::Ready(f),
    }
}

/// A request whose checkpoint the log signed (checks 1–3).
struct Verified<'a> {
    slot: &'a LogSlot,
    origin: String,
    req: AddCheckpointRequest,
    cp: Checkpoint,
}

impl Witness {
    /// A witness over `logs`, loading each log's stored state (and
    /// follower) from `store`. A follower that cannot be used is logged at
    /// WARN, naming the file; the log's state lines are then refused.
    pub fn open(
        signer: CosignatureSigner,
        logs: &[CheckpointVerifier],
        store: Store,
    ) -> Result<Self, StoreError> {
        let mut map = HashMap::new();
        for log in logs {
            let (state, stored) = match store.load(log)? {
                Some((state, stored)) => (Some(state), stored),
                None => (None, StoredFollower::Missing),
            };
            let follower = follower_at(state.as_ref(), stored);
            if let Follower::Absent(why) = &follower {
                tracing::warn!(
                    origin = %log.name(),
                    size = state.as_ref().map_or(0, |s| s.size),
                    file = %store.path(log.name()).display(),
                    why = %why,
                    "no registry follower for this log: its checkpoints with a state line \
                     (mazu-state-sha256) will be refused; others are unaffected. Re-initialise \
                     the witness (new data directory and key) to verify state lines again"
                );
            }
            map.insert(
                log.name().to_owned(),
                LogSlot {
                    verifier: log.clone(),
                    row: Mutex::new(Row { state, follower }),
                },
            );
        }
        Ok(Self {
            signer,
            logs: map,
            store,
        })
    }

    /// The witness's verifier key.
    pub fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// Each log's origin, stored size and whether the follower is held,
    /// sorted by origin.
    pub fn logs(&self) -> Vec<LogStatus> {
        let mut out: Vec<LogStatus> = self
            .logs
            .iter()
            .map(|(origin, slot)| {
                let row = slot.row.lock().ok();
                LogStatus {
                    origin: origin.clone(),
                    size: row.as_ref().and_then(|r| r.state.as_ref().map(|s| s.size)),
                    follower: row
                        .as_ref()
                        .is_some_and(|r| matches!(r.follower, Follower::Ready(_))),
                }
            })
            .collect();
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        out
    }

    /// Each log's origin and stored size (`None` if never cosigned).
    pub fn sizes(&self) -> Vec<(String, Option<u64>)> {
        self.logs()
            .into_iter()
            .map(|l| (l.origin, l.size))
            .collect()
    }

    /// Checks 1–3: a well-formed request for a configured log, signed by
    /// its key, its note text canonical.
    fn verify_request(&self, body: &[u8]) -> Result<Verified<'_>, AddError> {
        let malformed = |e: ProtocolError| AddError::Malformed(e.to_string());
        let req = AddCheckpointRequest::parse(body).map_err(malformed)?;
        let note = Note::parse(&req.checkpoint).map_err(|e| AddError::Malformed(e.to_string()))?;
        let parsed =
            Checkpoint::parse_body(&note.text).map_err(|e| AddError::Malformed(e.to_string()))?;
        let origin = parsed.origin.clone();
        let slot = self
            .logs
            .get(&origin)
            .ok_or_else(|| AddError::UnknownOrigin(origin.clone()))?;
        let cp = match slot.verifier.verify(&req.checkpoint) {
            Ok(cp) => cp,
            Err(
                reason @ (NoteError::NotSigned(_)
                | NoteError::BadSignature(_)
                | NoteError::WrongOrigin { .. }),
            ) => return Err(AddError::Forbidden { origin, reason }),
            Err(e) => return Err(AddError::Malformed(e.to_string())),
        };
        // The cosignature signs the canonical body; a note whose text is not
        // exactly that could not carry it.
        if cp.body() != note.text {
            return Err(AddError::Malformed(
                "the checkpoint body is not in canonical form".into(),
            ));
        }
        Ok(Verified {
            slot,
            origin,
            req,
            cp,
        })
    }

    /// Check 5 (after the state-line check, which the two routes do
    /// differently).
    fn check_old(v: &Verified<'_>) -> Result<(), AddError> {
        if v.req.old_size > v.cp.size {
            return Err(AddError::OldAboveSize {
                origin: v.origin.clone(),
                old: v.req.old_size,
                size: v.cp.size,
            });
        }
        Ok(())
    }

    /// Takes the log's lock.
    fn lock<'a>(v: &Verified<'a>) -> Result<MutexGuard<'a, Row>, AddError> {
        v.slot
            .row
            .lock()
            .map_err(|_| AddError::Internal("a previous request panicked holding the log state"))
    }

    /// Checks 6–8 under the lock: `old` is the stored size, no fork, the
    /// consistency proof verifies.
    fn check_extends(&self, row: &Row, v: &Verified<'_>) -> Result<(), AddError> {
        let (origin, cp, req) = (&v.origin, &v.cp, &v.req);
        let stored_size = row.state.as_ref().map_or(0, |s| s.size);
        if req.old_size != stored_size {
            return Err(AddError::SizeMismatch {
                origin: origin.clone(),
                old: req.old_size,
                stored: stored_size,
            });
        }
        if let Some(stored) = row.state.as_ref()
            && stored.size == cp.size
            && stored.root != cp.root
        {
            let text = String::from_utf8_lossy(&req.checkpoint);
            match self
                .store
                .save_fork_evidence(origin, &stored.checkpoint, &text)
            {
                Ok(path) => tracing::error!(
                    origin = %origin,
                    size = cp.size,
                    evidence = %path.display(),
                    "FORK: the log signed two checkpoints of the same size with different root \
                     hashes; refused, both kept as evidence"
                ),
                Err(e) => tracing::error!(
                    origin = %origin,
                    size = cp.size,
                    error = %e,
                    "FORK: the log signed two checkpoints of the same size with different root \
                     hashes; refused (the evidence could not be written)"
                ),
            }
            return Err(AddError::Fork {
                origin: origin.clone(),
                size: cp.size,
            });
        }
        let empty = mazu_log::merkle::empty_root();
        let stored_root = row.state.as_ref().map_or(empty, |s| s.root);
        if verify_consistency(stored_size, cp.size, &stored_root, &cp.root, &req.proof).is_err() {
            return Err(AddError::BadProof {
                origin: origin.clone(),
                old: stored_size,
                size: cp.size,
            });
        }
        Ok(())
    }

    /// Cosigns `v`'s checkpoint at `now` (while the caller holds the lock:
    /// as of `now`, this is the largest checkpoint the witness has seen for
    /// the log).
    fn cosign(&self, v: Verified<'_>, now: u64, advanced: bool) -> Result<Cosigned, AddError> {
        let line = self
            .signer
            .cosign(&v.cp, now)
            .map_err(|_| AddError::Internal("the clock is beyond 2^63 seconds"))?;
        Ok(Cosigned {
            origin: v.origin,
            old_size: v.req.old_size,
            size: v.cp.size,
            advanced,
            body: line,
        })
    }

    /// The state to store for `v`'s checkpoint, if it changes the row.
    fn next_state(row: &Row, v: &Verified<'_>, now: u64) -> Option<LogState> {
        let advanced = row.state.as_ref().is_none_or(|s| s.size != v.cp.size);
        advanced.then(|| LogState {
            size: v.cp.size,
            root: v.cp.root,
            checkpoint: String::from_utf8_lossy(&v.req.checkpoint).into_owned(),
            updated_at: now,
        })
    }

    /// Handles one `add-checkpoint` body (blocking: it may write and fsync).
    /// A checkpoint with a state line is refused ([`AddError::NeedsRecords`]).
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Cosigned, AddError> {
        let v = self.verify_request(body)?;
        match state_digest(&v.cp) {
            Ok(None) => {}
            // A cosignature on a state line always means "verified"; a
            // malformed line is a state line too.
            Ok(Some(_)) | Err(_) => {
                return Err(AddError::NeedsRecords { origin: v.origin });
            }
        }
        Self::check_old(&v)?;

        // Check and store atomically, per log.
        let mut row = Self::lock(&v)?;
        self.check_extends(&row, &v)?;
        let now = unix_now();
        let next = Self::next_state(&row, &v, now);
        let advanced = next.is_some();
        if let Some(new) = next {
            // The follower survives only a checkpoint at its own size and
            // root (the first checkpoint of an empty log); without the
            // records it cannot follow further.
            let kept = match &row.follower {
                Follower::Ready(f) if f.size() == new.size && f.root() == new.root => {
                    Some(f.encode_state())
                }
                _ => None,
            };
            self.store.save(&v.origin, &new, kept.as_deref())?;
            row.state = Some(new);
            if kept.is_none() && matches!(row.follower, Follower::Ready(_)) {
                tracing::warn!(
                    origin = %v.origin,
                    size = v.cp.size,
                    "the log advanced through /add-checkpoint, without records: the witness \
                     drops its registry follower and will refuse this log's state lines"
                );
                row.follower = Follower::Absent(format!(
                    "the witness cosigned size {} through /add-checkpoint, without the records",
                    v.cp.size
                ));
            }
        }
        let cosigned = self.cosign(v, now, advanced);
        drop(row);
        cosigned
    }

    /// Handles one `/mazu/v1/add-checkpoint` body: an `add-checkpoint` body
    /// and the records from the stored size to the checkpoint's (blocking:
    /// it may write and fsync). Cosigns the checkpoint's state line only if
    /// the state derived from the records has that digest (see the [module
    /// docs](self)).
    pub fn add_checkpoint_with_records(&self, body: &[u8]) -> Result<Cosigned, AddError> {
        let split = split_with_records(body).map_err(|e| AddError::Malformed(e.to_string()))?;
        let v = self.verify_request(split.add_checkpoint)?;
        let claimed = match state_digest(&v.cp) {
            Ok(Some(digest)) => digest,
            Ok(None) => return Err(AddError::NoStateLine { origin: v.origin }),
            Err(e) => return Err(AddError::Malformed(e.to_string())),
        };
        Self::check_old(&v)?;
        let records = decode_records(split.records)
            .map_err(|e| AddError::Malformed(format!("the records do not decode: {e}")))?;

        // Check and store atomically, per log.
        let mut row = Self::lock(&v)?;
        self.check_extends(&row, &v)?;
        let stored_size = row.state.as_ref().map_or(0, |s| s.size);
        let follower = match &row.follower {
            Follower::Ready(f) if f.size() == stored_size => f,
            Follower::Ready(f) => {
                return Err(AddError::NoFollower {
                    origin: v.origin,
                    size: stored_size,
                    why: format!("the follower is at size {}", f.size()),
                });
            }
            Follower::Absent(why) => {
                return Err(AddError::NoFollower {
                    origin: v.origin,
                    size: stored_size,
                    why: why.clone(),
                });
            }
        };
        let now_ms = unix_now_ms();
        let now = now_ms / 1000;
        let mut derived = follower.clone();
        let void = derived
            .extend(&records, v.cp.size, &v.cp.root, now_ms)
            .map_err(|reason| AddError::BadRecords {
                origin: v.origin.clone(),
                old: stored_size,
                size: v.cp.size,
                reason,
            })?;
        let digest = derived.state_digest();
        if digest != claimed {
            let note = String::from_utf8_lossy(&v.req.checkpoint);
            match self
                .store
                .save_state_evidence(&v.origin, stored_size, &digest, &note)
            {
                Ok(path) => tracing::error!(
                    origin = %v.origin,
                    old = stored_size,
                    size = v.cp.size,
                    evidence = %path.display(),
                    "CURATOR MISBEHAVIOUR? the log signed a checkpoint whose state line does not \
                     follow from the records; refused, the checkpoint kept as evidence"
                ),
                Err(e) => tracing::error!(
                    origin = %v.origin,
                    old = stored_size,
                    size = v.cp.size,
                    error = %e,
                    "CURATOR MISBEHAVIOUR? the log signed a checkpoint whose state line does not \
                     follow from the records; refused (the evidence could not be written)"
                ),
            }
            return Err(AddError::BadState {
                origin: v.origin,
                size: v.cp.size,
            });
        }
        if !void.is_empty() {
            tracing::warn!(
                origin = %v.origin,
                old = stored_size,
                size = v.cp.size,
                void = void.len(),
                "the records include void records (they change nothing for anyone; an honest \
                 curator writes none)"
            );
        }
        let next = Self::next_state(&row, &v, now);
        let advanced = next.is_some();
        if let Some(new) = next {
            // The checkpoint and the follower at its size, in one write.
            self.store
                .save(&v.origin, &new, Some(&derived.encode_state()))?;
            row.state = Some(new);
            row.follower = Follower::Ready(derived);
        }
        let cosigned = self.cosign(v, now, advanced);
        drop(row);
        cosigned
    }
}
