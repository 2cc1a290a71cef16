//! Leaf records: the compact statements the Merkle tree commits to.
//!
//! Every log entry (a binding with its RBE registration, a token reveal, a
//! release, a revocation) is summarized by one fixed-size **leaf record**; the
//! tree's leaf `i` is `SHA-256(0x00 || record_i)`. A record carries exactly
//! what the data plane needs to derive the registry (workload id, slot, TLS
//! key hash, token expiry, lifecycle) plus `entry_digest`, the SHA-256 of the
//! full entry it summarizes. So a filter can download ~100 bytes per entry,
//! verify them against a witnessed root and derive the registry itself, while
//! an auditor downloads the full entries, checks every one (token, proof of
//! possession, RBE well-formedness) and checks that each record is the
//! summary of its entry. A curator that writes a record its entry does not
//! support is caught by that check, and since the records are in a witnessed
//! log, every party sees the same lie.
//!
//! ```text
//! record = "MZLR"           4 bytes, type tag
//!          version          1 byte, RECORD_VERSION (= 2; 1 had no expiry in a bind)
//!          kind             1 byte (below)
//!          at_ms            u64 big-endian: when the curator logged it, Unix ms
//!          id               32 bytes: the workload id, SHA-256(token)
//!          entry_digest     32 bytes: SHA-256 of the full entry's bytes
//!          body             by kind:
//!   1 bind     slot u32 BE, spki_hash (32): SHA-256 of the TLS key's DER SPKI,
//!              token_expiry u64 BE: the `exp` of the (still secret) token,
//!              Unix seconds, as the holder signed it in its proof of possession
//!   2 reveal   token_expiry u64 BE: the revealed token's `exp`, Unix seconds
//!   3 release  reason u8 (1 expired, 2 unrevealed, 3 holder)
//!   4 revoke   (empty)
//! ```
//!
//! Decoding is strict (exact length per kind, known kind and reason, nothing
//! after the body): a verifier that meets a record it does not understand
//! must stop rather than skip it, because it might be a revocation.

use sha2::{Digest, Sha256};

use crate::merkle::{Hash, leaf_hash};

/// Type tag of a record.
pub const RECORD_MAGIC: [u8; 4] = *b"MZLR";

/// The record format version written and read by this code.
pub const RECORD_VERSION: u8 = 2;

/// Length of the fields every record starts with.
pub const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 32 + 32;

/// Length of a bind record's body.
const BIND_BODY_LEN: usize = 4 + 32 + 8;

/// The longest record (a bind).
pub const MAX_RECORD_LEN: usize = HEADER_LEN + BIND_BODY_LEN;

/// Why a workload's registration ended without a revocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseReason {
    /// Its token expired.
    Expired,
    /// Its token was not revealed within the curator's reveal window.
    Unrevealed,
    /// Its holder released it (after a rotation, or its pod was deleted), with
    /// a request signed by the bound TLS key.
    Holder,
}

impl ReleaseReason {
    /// The one-byte code in records and entries.
    pub fn code(self) -> u8 {
        match self {
            ReleaseReason::Expired => 1,
            ReleaseReason::Unrevealed => 2,
            ReleaseReason::Holder => 3,
        }
    }

    /// The reason for a [`code`](Self::code); `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ReleaseReason::Expired),
            2 => Some(ReleaseReason::Unrevealed),
            3 => Some(ReleaseReason::Holder),
            _ => None,
        }
    }

    /// A stable lowercase name, for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Expired => "expired",
            ReleaseReason::Unrevealed => "unrevealed",
            ReleaseReason::Holder => "holder",
        }
    }
}

/// What a record says, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordBody {
    /// The id is bound to a TLS key (and an RBE key in `slot`). Only the
    /// first binding of an id in the log ever counts.
    Bind {
        /// The RBE slot.
        slot: u32,
        /// SHA-256 of the bound TLS key's DER SubjectPublicKeyInfo.
        spki_hash: Hash,
        /// The token's `exp` (Unix seconds), committed by the holder before
        /// the token is revealed. A reveal must match it, and every party
        /// forgets the id once it has passed (the token is then useless).
        token_expiry: u64,
    },
    /// The token whose SHA-256 is the id was revealed to the curator (and is
    /// in the full entry): the binding is live until `token_expiry`.
    Reveal {
        /// The token's `exp`, Unix seconds.
        token_expiry: u64,
    },
    /// The binding ended; its slot is free again. The id stays void.
    Release {
        /// Why.
        reason: ReleaseReason,
    },
    /// The holder revoked the binding: peers must stop trusting it at once.
    /// The id stays void.
    Revoke,
}

impl RecordBody {
    fn kind(&self) -> u8 {
        match self {
            RecordBody::Bind { .. } => 1,
            RecordBody::Reveal { .. } => 2,
            RecordBody::Release { .. } => 3,
            RecordBody::Revoke => 4,
        }
    }

    /// A stable lowercase name of the kind, for logs and JSON.
    pub fn kind_name(&self) -> &'static str {
        match self {
            RecordBody::Bind { .. } => "bind",
            RecordBody::Reveal { .. } => "reveal",
            RecordBody::Release { .. } => "release",
            RecordBody::Revoke => "revoke",
        }
    }
}

/// One leaf record (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeafRecord {
    /// When the curator logged the entry, Unix milliseconds.
    pub at_ms: u64,
    /// The workload id, SHA-256 of its token.
    pub id: Hash,
    /// SHA-256 of the full entry this record summarizes.
    pub entry_digest: Hash,
    /// What it says.
    pub body: RecordBody,
}

/// Why record bytes did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The type tag is not `"MZLR"`.
    #[error("not a leaf record (bad type tag)")]
    BadMagic,
    /// A version this code does not read.
    #[error("unsupported leaf record version {0}")]
    UnsupportedVersion(u8),
    /// A kind this code does not know: the verifier must stop here.
    #[error("unknown leaf record kind {0}")]
    UnknownKind(u8),
    /// A release reason this code does not know.
    #[error("unknown release reason {0}")]
    UnknownReason(u8),
    /// The record's length is wrong for its kind.
    #[error("leaf record of {got} bytes, expected {expected} for its kind")]
    Length {
        /// Bytes given.
        got: usize,
        /// Bytes its kind has.
        expected: usize,
    },
}

impl LeafRecord {
    /// The canonical bytes (see the [module docs](self)).
    pub fn to_bytes(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec::Vec::with_capacity(MAX_RECORD_LEN);
        out.extend_from_slice(&RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.push(self.body.kind());
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.entry_digest);
        match self.body {
            RecordBody::Bind {
                slot,
                spki_hash,
                token_expiry,
            } => {
                out.extend_from_slice(&slot.to_be_bytes());
                out.extend_from_slice(&spki_hash);
                out.extend_from_slice(&token_expiry.to_be_bytes());
            }
            RecordBody::Reveal { token_expiry } => {
                out.extend_from_slice(&token_expiry.to_be_bytes());
            }
            RecordBody::Release { reason } => out.push(reason.code()),
            RecordBody::Revoke => {}
        }
        out
    }

    /// Strictly decodes one record's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(RecordError::Length {
                got: bytes.len(),
                expected: HEADER_LEN,
            })?;
        if header[..4] != RECORD_MAGIC {
            return Err(RecordError::BadMagic);
        }
        if header[4] != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion(header[4]));
        }
        let kind = header[5];
        let body_len = match kind {
            1 => BIND_BODY_LEN,
            2 => 8,
            3 => 1,
            4 => 0,
            other => return Err(RecordError::UnknownKind(other)),
        };
        if bytes.len() != HEADER_LEN + body_len {
            return Err(RecordError::Length {
                got: bytes.len(),
                expected: HEADER_LEN + body_len,
            });
        }
        let mut at_ms = [0u8; 8];
        at_ms.copy_from_slice(&header[6..14]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&header[14..46]);
        let mut entry_digest = [0u8; 32];
        entry_digest.copy_from_slice(&header[46..78]);
        let body = &bytes[HEADER_LEN..];
        let body = match kind {
            1 => {
                let mut slot = [0u8; 4];
                slot.copy_from_slice(&body[..4]);
                let mut spki_hash = [0u8; 32];
                spki_hash.copy_from_slice(&body[4..36]);
                let mut expiry = [0u8; 8];
                expiry.copy_from_slice(&body[36..]);
                RecordBody::Bind {
                    slot: u32::from_be_bytes(slot),
                    spki_hash,
                    token_expiry: u64::from_be_bytes(expiry),
                }
            }
            2 => {
                let mut expiry = [0u8; 8];
                expiry.copy_from_slice(body);
                RecordBody::Reveal {
                    token_expiry: u64::from_be_bytes(expiry),
                }
            }
            3 => RecordBody::Release {
                reason: ReleaseReason::from_code(body[0])
                    .ok_or(RecordError::UnknownReason(body[0]))?,
            },
            _ => RecordBody::Revoke,
        };
        Ok(LeafRecord {
            at_ms: u64::from_be_bytes(at_ms),
            id,
            entry_digest,
            body,
        })
    }

    /// The RFC 6962 leaf hash of this record: `SHA-256(0x00 || record)`.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.to_bytes())
    }
}

/// SHA-256 of a full entry's bytes: the `entry_digest` of its record.
pub fn entry_digest(entry_bytes: &[u8]) -> Hash {
    Sha256::digest(entry_bytes).into()
}

/// Splits a concatenation of records (as `GET /v1/log/records` serves them:
/// records back to back, each self-delimiting by its kind) into records.
pub fn decode_records(mut bytes: &[u8]) -> Result<alloc::vec::Vec<LeafRecord>, RecordError> {
    let mut out = alloc::vec::Vec::new();
    while !bytes.is_empty() {
        let len = match bytes.get(5) {
            Some(1) => HEADER_LEN + BIND_BODY_LEN,
            Some(2) => HEADER_LEN + 8,
            Some(3) => HEADER_LEN + 1,
            Some(4) => HEADER_LEN,
            Some(other) if bytes.get(..4) == Some(&RECORD_MAGIC[..]) => {
                return Err(RecordError::UnknownKind(*other));
            }
            _ => {
                return Err(RecordError::Length {
                    got: bytes.len(),
                    expected: HEADER_LEN,
                });
            }
        };
        let (one, rest) = bytes.split_at_checked(len).ok_or(RecordError::Length {
            got: bytes.len(),
            expected: len,
        })?;
        out.push(LeafRecord::from_bytes(one)?);
        bytes = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn samples() -> [LeafRecord; 4] {
        let base = |body| LeafRecord {
            at_ms: 1_700_000_000_123,
            id: [7; 32],
            entry_digest: [9; 32],
            body,
        };
        [
            base(RecordBody::Bind {
                slot: 0x0102_0304,
                spki_hash: [5; 32],
                token_expiry: 1_800_000_000,
            }),
            base(RecordBody::Reveal {
                token_expiry: 1_800_000_000,
            }),
            base(RecordBody::Release {
                reason: ReleaseReason::Holder,
            }),
            base(RecordBody::Revoke),
        ]
    }

    #[test]
    fn exact_layout_of_a_bind() {
        let bytes = samples()[0].to_bytes();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"MZLR\x02\x01");
        expected.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&[9; 32]);
        expected.extend_from_slice(&[1, 2, 3, 4]);
        expected.extend_from_slice(&[5; 32]);
        expected.extend_from_slice(&1_800_000_000u64.to_be_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), MAX_RECORD_LEN);
    }

    #[test]
    fn every_kind_round_trips_and_concatenates() {
        let mut all = Vec::new();
        for record in samples() {
            let bytes = record.to_bytes();
            assert_eq!(LeafRecord::from_bytes(&bytes), Ok(record));
            assert_eq!(record.leaf_hash(), leaf_hash(&bytes));
            all.extend_from_slice(&bytes);
        }
        assert_eq!(decode_records(&all).unwrap(), samples().to_vec());
        assert_eq!(decode_records(&[]).unwrap(), Vec::new());
    }

    #[test]
    fn strict_decoding_refuses_everything_else() {
        for record in samples() {
            let bytes = record.to_bytes();
            for cut in 0..bytes.len() {
                assert!(LeafRecord::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
                assert!(decode_records(&bytes[..cut]).is_err() || cut == 0);
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(LeafRecord::from_bytes(&long).is_err());
            assert!(decode_records(&long).is_err());
        }
        let bind = samples()[0].to_bytes();
        let mut tag = bind.clone();
        tag[0] = b'X';
        assert_eq!(LeafRecord::from_bytes(&tag), Err(RecordError::BadMagic));
        let mut version = bind.clone();
        version[4] = 1;
        assert_eq!(
            LeafRecord::from_bytes(&version),
            Err(RecordError::UnsupportedVersion(1))
        );
        let mut kind = bind.clone();
        kind[5] = 5;
        assert_eq!(
            LeafRecord::from_bytes(&kind),
            Err(RecordError::UnknownKind(5))
        );
        assert_eq!(decode_records(&kind), Err(RecordError::UnknownKind(5)));
        let mut reason = samples()[2].to_bytes();
        *reason.last_mut().unwrap() = 0;
        assert_eq!(
            LeafRecord::from_bytes(&reason),
            Err(RecordError::UnknownReason(0))
        );
    }

    #[test]
    fn the_leaf_commits_to_every_field() {
        let base = samples()[0];
        let mut changed = [base; 6];
        changed[0].at_ms += 1;
        changed[1].id[31] ^= 1;
        changed[2].entry_digest[0] ^= 1;
        changed[3].body = RecordBody::Bind {
            slot: 0,
            spki_hash: [5; 32],
            token_expiry: 1_800_000_000,
        };
        changed[4].body = RecordBody::Bind {
            slot: 0x0102_0304,
            spki_hash: [6; 32],
            token_expiry: 1_800_000_000,
        };
        changed[5].body = RecordBody::Bind {
            slot: 0x0102_0304,
            spki_hash: [5; 32],
            token_expiry: 1_800_000_001,
        };
        for other in changed {
            assert_ne!(other.leaf_hash(), base.leaf_hash());
        }
    }
}
