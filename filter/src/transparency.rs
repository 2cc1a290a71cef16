//! Holding the curator to its append-only log.
//!
//! With `curator.checkpoint_key` configured, a registry answer is used only
//! if it carries the log's evidence (`mazu_log::evidence`) and the evidence
//! holds: a checkpoint signed by the pinned key, of tree size equal to the
//! registry's version, whose registry line is the SHA-256 of the registry
//! the filter would install, and — against the last checkpoint this Envoy
//! accepted — either the same root at the same size or a valid consistency
//! proof to the larger size. So every registry a filter uses is one the
//! curator signed as the result of a log that only ever grew: rewriting,
//! dropping or reordering logged registrations, or forking the log, is
//! refused by every proxy that saw the earlier checkpoint, and a registry
//! that is not the one the log yields carries the curator's signature on
//! the lie, for auditors (`docs/audit.md`).

use core::fmt;

use mazu_log::evidence::{self, EvidenceError};
use mazu_log::merkle::{Hash, ProofError, verify_consistency};
use mazu_log::{CheckpointVerifier, NoteError};

/// The last checkpoint accepted: the tree size, its root, and the registry
/// digest it signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptedCheckpoint {
    /// Tree size (= the registry version it came with).
    pub size: u64,
    /// Merkle root of the first `size` log entries.
    pub root: Hash,
    /// SHA-256 of the registry snapshot of version `size`.
    pub registry: Hash,
}

impl AcceptedCheckpoint {
    /// 72 bytes for shared data: the size (big-endian), the root, the
    /// registry digest.
    pub fn encode(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..8].copy_from_slice(&self.size.to_be_bytes());
        out[8..40].copy_from_slice(&self.root);
        out[40..].copy_from_slice(&self.registry);
        out
    }

    /// Decodes [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 72] = bytes.try_into().ok()?;
        Some(AcceptedCheckpoint {
            size: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            root: bytes[8..40].try_into().ok()?,
            registry: bytes[40..].try_into().ok()?,
        })
    }
}

/// The evidence header values of one registry answer, as received.
#[derive(Clone, Copy, Debug, Default)]
pub struct Evidence<'a> {
    /// [`evidence::CHECKPOINT_HEADER`].
    pub checkpoint: Option<&'a [u8]>,
    /// [`evidence::CONSISTENCY_HEADER`].
    pub consistency: Option<&'a [u8]>,
}

/// Why an answer's evidence was refused. The registry held stays in force.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointFailure {
    /// The answer carries no checkpoint.
    Missing,
    /// A header is not decodable.
    Undecodable(EvidenceError),
    /// The checkpoint is not signed by the pinned key (or is malformed).
    Signature(NoteError),
    /// The checkpoint is of another size than the registry's version.
    SizeMismatch {
        /// The checkpoint's tree size.
        checkpoint: u64,
        /// The registry's version.
        registry: u64,
    },
    /// The checkpoint has no usable registry line.
    NoRegistryBinding(EvidenceError),
    /// The checkpoint signs another registry than the one answered.
    RegistryMismatch {
        /// The version both claim.
        version: u64,
    },
    /// The checkpoint is older than the one accepted before.
    Rollback {
        /// The size accepted before.
        held: u64,
        /// The size offered.
        offered: u64,
    },
    /// Same size as the one accepted before, another root: a forked log.
    Fork {
        /// The size.
        size: u64,
    },
    /// A larger checkpoint without the consistency proof from the held one.
    NoConsistencyProof {
        /// The size accepted before.
        from: u64,
        /// The size offered.
        to: u64,
    },
    /// The consistency proof does not link the held checkpoint to the
    /// offered one: the log was rewritten.
    Inconsistent {
        /// The size accepted before.
        from: u64,
        /// The size offered.
        to: u64,
        /// Why the proof failed.
        error: ProofError,
    },
}

impl fmt::Display for CheckpointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointFailure::Missing => write!(
                f,
                "the answer carries no {} header",
                evidence::CHECKPOINT_HEADER
            ),
            CheckpointFailure::Undecodable(e) => write!(f, "{e}"),
            CheckpointFailure::Signature(e) => {
                write!(f, "the checkpoint does not verify with the pinned key: {e}")
            }
            CheckpointFailure::SizeMismatch {
                checkpoint,
                registry,
            } => write!(
                f,
                "the checkpoint is of tree size {checkpoint}, the registry of version {registry}"
            ),
            CheckpointFailure::NoRegistryBinding(e) => write!(f, "{e}"),
            CheckpointFailure::RegistryMismatch { version } => write!(
                f,
                "the signed checkpoint binds another registry than the one served at version {version}"
            ),
            CheckpointFailure::Rollback { held, offered } => write!(
                f,
                "checkpoint of size {offered} is older than the accepted size {held}"
            ),
            CheckpointFailure::Fork { size } => write!(
                f,
                "checkpoint of size {size} has another root than the one accepted at that size (forked log)"
            ),
            CheckpointFailure::NoConsistencyProof { from, to } => {
                write!(f, "no consistency proof from size {from} to {to}")
            }
            CheckpointFailure::Inconsistent { from, to, error } => write!(
                f,
                "the log from size {from} to {to} is not append-only: {error}"
            ),
        }
    }
}

/// Checks one answer's evidence for a registry of `version` whose snapshot
/// encoding hashes to `registry_digest`, against the checkpoint accepted
/// before (`held`, none on first use: the pinned key vouches for the first).
/// Returns the checkpoint to remember.
pub fn check(
    verifier: &CheckpointVerifier,
    held: Option<AcceptedCheckpoint>,
    offered: &Evidence<'_>,
    version: u64,
    registry_digest: &Hash,
) -> Result<AcceptedCheckpoint, CheckpointFailure> {
    let header = offered.checkpoint.ok_or(CheckpointFailure::Missing)?;
    let note = evidence::decode_note(header).map_err(CheckpointFailure::Undecodable)?;
    let checkpoint = verifier
        .verify(&note)
        .map_err(CheckpointFailure::Signature)?;
    if checkpoint.size != version {
        return Err(CheckpointFailure::SizeMismatch {
            checkpoint: checkpoint.size,
            registry: version,
        });
    }
    let signed =
        evidence::registry_digest(&checkpoint).map_err(CheckpointFailure::NoRegistryBinding)?;
    if signed != *registry_digest {
        return Err(CheckpointFailure::RegistryMismatch { version });
    }
    let accepted = AcceptedCheckpoint {
        size: checkpoint.size,
        root: checkpoint.root,
        registry: signed,
    };
    let Some(held) = held else {
        return Ok(accepted);
    };
    if accepted.size < held.size {
        return Err(CheckpointFailure::Rollback {
            held: held.size,
            offered: accepted.size,
        });
    }
    if accepted.size == held.size {
        // The registry digest is then equal too (it matched the registry
        // answered, which is the held one at this version).
        return if accepted.root == held.root {
            Ok(accepted)
        } else {
            Err(CheckpointFailure::Fork { size: held.size })
        };
    }
    let (from, to) = (held.size, accepted.size);
    let proof = offered
        .consistency
        .ok_or(CheckpointFailure::NoConsistencyProof { from, to })?;
    let proof = evidence::decode_proof(proof).map_err(CheckpointFailure::Undecodable)?;
    verify_consistency(from, to, &held.root, &accepted.root, &proof)
        .map_err(|error| CheckpointFailure::Inconsistent { from, to, error })?;
    Ok(accepted)
}

#[cfg(test)]
mod tests;
