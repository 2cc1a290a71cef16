//! The witness itself: C2SP `tlog-witness` `add-checkpoint`, without HTTP.
//!
//! The checks, in the spec's order (each with the status it maps to):
//!
//! 1. the body is an `add-checkpoint` body and the note a checkpoint (400);
//! 2. the origin is a configured log (404);
//! 3. the log's key signed it (403; signatures of other keys are ignored);
//! 4. `old <= size` (400: in particular a checkpoint smaller than the stored
//!    one sent with the stored size, a rollback);
//! 5. under the log's lock: `old` equals the stored size (0 if none), else
//!    409 with the stored size;
//! 6. if `old == size`: the root equals the stored root, else 409 (a fork:
//!    logged as `FORK`, both notes kept in `evidence/`);
//! 7. the consistency proof from (stored size, stored root) to (size, root)
//!    verifies (422; the proof must be empty from 0);
//! 8. store the new state durably (if it changed), cosign it with the
//!    current time and release the lock: checking and storing are one
//!    atomic step, so two requests cannot both advance from one size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use mazu_log::checkpoint::{Checkpoint, CheckpointVerifier, Note, NoteError};
use mazu_log::cosignature::CosignatureSigner;
use mazu_log::merkle::verify_consistency;
use mazu_log::witness_protocol::{AddCheckpointRequest, ProtocolError};

use crate::store::{LogState, Store, StoreError};

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
            Self::Malformed(_) | Self::OldAboveSize { .. } => 400,
            Self::Forbidden { .. } => 403,
            Self::UnknownOrigin(_) => 404,
            Self::SizeMismatch { .. } | Self::Fork { .. } => 409,
            Self::BadProof { .. } => 422,
            Self::Storage(_) | Self::Internal(_) => 500,
        }
    }

    /// A short label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownOrigin(_) => "unknown_origin",
            Self::Forbidden { .. } => "forbidden",
            Self::OldAboveSize { .. } => "old_above_size",
            Self::SizeMismatch { .. } => "conflict",
            Self::Fork { .. } => "fork",
            Self::BadProof { .. } => "bad_proof",
            Self::Storage(_) | Self::Internal(_) => "internal",
        }
    }

    /// The origin concerned, if it is a configured one.
    pub fn known_origin(&self) -> Option<&str> {
        match self {
            Self::Forbidden { origin, .. }
            | Self::OldAboveSize { origin, .. }
            | Self::SizeMismatch { origin, .. }
            | Self::Fork { origin, .. }
            | Self::BadProof { origin, .. } => Some(origin),
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

struct LogSlot {
    verifier: CheckpointVerifier,
    state: Mutex<Option<LogState>>,
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Witness {
    /// A witness over `logs`, loading each log's stored state from `store`.
    pub fn open(
        signer: CosignatureSigner,
        logs: &[CheckpointVerifier],
        store: Store,
    ) -> Result<Self, StoreError> {
        let mut map = HashMap::new();
        for log in logs {
            let state = store.load(log)?;
            map.insert(
                log.name().to_owned(),
                LogSlot {
                    verifier: log.clone(),
                    state: Mutex::new(state),
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

    /// Each log's origin and stored size (`None` if never cosigned).
    pub fn sizes(&self) -> Vec<(String, Option<u64>)> {
        let mut out: Vec<(String, Option<u64>)> = self
            .logs
            .iter()
            .map(|(origin, slot)| {
                let size = slot
                    .state
                    .lock()
                    .ok()
                    .and_then(|s| s.as_ref().map(|s| s.size));
                (origin.clone(), size)
            })
            .collect();
        out.sort();
        out
    }

    /// Handles one `add-checkpoint` body (blocking: it may write and fsync).
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Cosigned, AddError> {
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
        if req.old_size > cp.size {
            return Err(AddError::OldAboveSize {
                origin,
                old: req.old_size,
                size: cp.size,
            });
        }

        // Check and store atomically, per log.
        let mut state = slot
            .state
            .lock()
            .map_err(|_| AddError::Internal("a previous request panicked holding the log state"))?;
        let stored_size = state.as_ref().map_or(0, |s| s.size);
        if req.old_size != stored_size {
            return Err(AddError::SizeMismatch {
                origin,
                old: req.old_size,
                stored: stored_size,
            });
        }
        if let Some(stored) = state.as_ref()
            && stored.size == cp.size
            && stored.root != cp.root
        {
            let text = String::from_utf8_lossy(&req.checkpoint);
            match self
                .store
                .save_fork_evidence(&origin, &stored.checkpoint, &text)
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
                origin,
                size: cp.size,
            });
        }
        let empty = mazu_log::merkle::empty_root();
        let stored_root = state.as_ref().map_or(empty, |s| s.root);
        if verify_consistency(stored_size, cp.size, &stored_root, &cp.root, &req.proof).is_err() {
            return Err(AddError::BadProof {
                origin,
                old: stored_size,
                size: cp.size,
            });
        }
        let now = unix_now();
        let advanced = state.as_ref().is_none_or(|s| s.size != cp.size);
        if advanced {
            let new = LogState {
                size: cp.size,
                root: cp.root,
                checkpoint: String::from_utf8_lossy(&req.checkpoint).into_owned(),
                updated_at: now,
            };
            self.store.save(&origin, &new)?;
            *state = Some(new);
        }
        // Signed while holding the lock: as of `now`, this is the largest
        // checkpoint the witness has seen for the log.
        let line = self
            .signer
            .cosign(&cp, now)
            .map_err(|_| AddError::Internal("the clock is beyond 2^63 seconds"))?;
        drop(state);
        Ok(Cosigned {
            origin,
            old_size: req.old_size,
            size: cp.size,
            advanced,
            body: line,
        })
    }
}
