//! The log's evidence in answers, and the checkpoint's state line.
//!
//! A checkpoint body may carry the extension line [`state_extension`]: the
//! SHA-256 of the canonical encoding of the registry follower's state after
//! the log's first `size` records
//! (`mazu_identity::registry::LogFollower::encode_state`). The curator writes
//! the line and serves the state itself (`GET /v1/log/state?size=N`,
//! `docs/protocol.md`); a witness cosigns the line only after deriving the
//! same state from the records (`docs/witness.md`), so a quorum of
//! cosignatures vouches for "after these records the registry is exactly
//! this", and a lie is signed evidence against the curator.
//!
//! The headers below carry a signed note ([`encode_note`]) or a consistency
//! proof ([`encode_proof`]) in an HTTP answer.

use alloc::string::String;
use alloc::vec::Vec;

use base64ct::{Base64, Encoding as _};

use crate::checkpoint::{Checkpoint, MAX_NOTE_LEN};
use crate::merkle::{Hash, MAX_PROOF_LEN};

/// Response header: the signed checkpoint at the answer's version.
pub const CHECKPOINT_HEADER: &str = "mazu-checkpoint";
/// Response header: the consistency proof from the client's checkpoint.
pub const CONSISTENCY_HEADER: &str = "mazu-consistency";
/// Request header: the size of the last checkpoint the client accepted.
pub const CHECKPOINT_SIZE_HEADER: &str = "mazu-checkpoint-size";
/// The state line's keyword; the digest follows after one space, standard
/// base64.
pub const STATE_EXTENSION: &str = "mazu-state-sha256";

/// Why evidence could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not standard base64, or longer than any valid value.
    #[error("{0} is not valid base64 of an acceptable length")]
    Encoding(&'static str),
    /// The consistency proof is not a whole number of 32-byte hashes.
    #[error("the consistency proof is not a sequence of 32-byte hashes")]
    ProofShape,
    /// The checkpoint carries a malformed or repeated state line.
    #[error("the checkpoint's {STATE_EXTENSION} line is malformed or repeated")]
    BadStateDigest,
}

/// A signed note as a header value.
pub fn encode_note(note: &str) -> String {
    Base64::encode_string(note.as_bytes())
}

/// The note bytes of a [`CHECKPOINT_HEADER`] value.
pub fn decode_note(value: &[u8]) -> Result<Vec<u8>, EvidenceError> {
    let bad = EvidenceError::Encoding(CHECKPOINT_HEADER);
    // Base64 of a note that the verifier would accept at all.
    if value.len() > MAX_NOTE_LEN.div_ceil(3) * 4 {
        return Err(bad);
    }
    Base64::decode_vec(core::str::from_utf8(value).map_err(|_| bad)?).map_err(|_| bad)
}

/// A consistency proof as a header value.
pub fn encode_proof(proof: &[Hash]) -> String {
    Base64::encode_string(&proof.concat())
}

/// The hashes of a [`CONSISTENCY_HEADER`] value (at most
/// [`MAX_PROOF_LEN`]).
pub fn decode_proof(value: &[u8]) -> Result<Vec<Hash>, EvidenceError> {
    let bad = EvidenceError::Encoding(CONSISTENCY_HEADER);
    if value.len() > (MAX_PROOF_LEN * 32).div_ceil(3) * 4 {
        return Err(bad);
    }
    let bytes =
        Base64::decode_vec(core::str::from_utf8(value).map_err(|_| bad)?).map_err(|_| bad)?;
    let chunks = bytes.chunks_exact(32);
    if !chunks.remainder().is_empty() {
        return Err(EvidenceError::ProofShape);
    }
    Ok(chunks
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// The checkpoint extension line committing to the follower state whose
/// canonical encoding hashes (SHA-256) to `digest`.
pub fn state_extension(digest: &Hash) -> String {
    alloc::format!("{STATE_EXTENSION} {}", Base64::encode_string(digest))
}

/// The state digest a verified checkpoint commits to: `None` without a
/// [`state_extension`] line, an error for a malformed or repeated one.
pub fn state_digest(checkpoint: &Checkpoint) -> Result<Option<Hash>, EvidenceError> {
    let mut found = None;
    for line in &checkpoint.extensions {
        let Some(rest) = line.strip_prefix(STATE_EXTENSION) else {
            continue;
        };
        let Some(value) = rest.strip_prefix(' ') else {
            // Another keyword that merely starts the same way.
            continue;
        };
        let mut digest = [0u8; 32];
        let decoded =
            Base64::decode(value, &mut digest).map_err(|_| EvidenceError::BadStateDigest)?;
        if decoded.len() != 32 || found.is_some() {
            return Err(EvidenceError::BadStateDigest);
        }
        found = Some(digest);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use alloc::vec;

    fn checkpoint(extensions: Vec<String>) -> Checkpoint {
        Checkpoint {
            origin: "example.org/log".into(),
            size: 1,
            root: [0; 32],
            extensions,
        }
    }

    #[test]
    fn notes_and_proofs_round_trip() {
        let note = "example.org/log\n1\nAAAA\n\n— example.org/log sig\n";
        assert_eq!(
            decode_note(encode_note(note).as_bytes()).unwrap(),
            note.as_bytes()
        );
        for n in [0usize, 1, 2, 17, MAX_PROOF_LEN] {
            let proof: Vec<Hash> = (0..n).map(|i| [i as u8; 32]).collect();
            assert_eq!(
                decode_proof(encode_proof(&proof).as_bytes()).unwrap(),
                proof
            );
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        assert!(decode_note(b"not base64!").is_err());
        assert!(decode_note(&[0xff, 0xfe]).is_err());
        assert!(decode_note(&vec![b'A'; MAX_NOTE_LEN * 2]).is_err());
        assert_eq!(
            decode_proof(Base64::encode_string(&[1u8; 33]).as_bytes()),
            Err(EvidenceError::ProofShape)
        );
        assert!(decode_proof(b"%%%").is_err());
        let too_long: Vec<Hash> = vec![[1; 32]; MAX_PROOF_LEN + 1];
        assert!(decode_proof(encode_proof(&too_long).as_bytes()).is_err());
    }

    #[test]
    fn the_state_line_is_optional_but_never_malformed_or_repeated() {
        let d = [9u8; 32];
        let line = state_extension(&d);
        assert!(line.starts_with("mazu-state-sha256 "));
        assert_eq!(state_digest(&checkpoint(vec![line.clone()])), Ok(Some(d)));
        // Other extension lines are ignored.
        assert_eq!(
            state_digest(&checkpoint(vec!["other 1".into(), line.clone()])),
            Ok(Some(d))
        );
        assert_eq!(
            state_digest(&checkpoint(vec!["mazu-state-sha256x AAAA".into()])),
            Ok(None)
        );
        assert_eq!(state_digest(&checkpoint(vec![])), Ok(None));
        for bad in [
            vec![line.clone(), line],
            vec!["mazu-state-sha256 AAAA".into()],
            vec!["mazu-state-sha256 ***".into()],
        ] {
            assert_eq!(
                state_digest(&checkpoint(bad)),
                Err(EvidenceError::BadStateDigest)
            );
        }
    }
}
