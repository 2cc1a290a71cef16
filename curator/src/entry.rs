//! The log entry: one curator decision as self-contained canonical bytes.
//!
//! Since format version 2 the log holds four kinds of entries, each
//! summarized by one leaf record ([`mazu_log::record`]) that the Merkle tree
//! commits to:
//!
//! ```text
//! entry = "MZLE"            4 bytes, type tag
//!         version           1 byte, ENTRY_VERSION (= 3; 2 had no expiry in a bind)
//!         kind              1 byte: 1 bind, 2 reveal, 3 release, 4 revoke
//!         at_ms             u64 big-endian, Unix time in milliseconds when the
//!                           curator logged it
//!         id                32 bytes, the workload id (SHA-256 of its token)
//!         body              by kind; every variable field is a u32 big-endian
//!                           length followed by that many bytes
//!   bind     slot u32 BE, token_expiry u64 BE (the token's `exp`, Unix s,
//!            as the holder committed to it), tls_spki (DER SubjectPublicKeyInfo),
//!            tls_signature (proof of possession, see crate::pop),
//!            registration (mazu_rbe::Registration::to_bytes)
//!   reveal   token (the JWT exactly as revealed, compact serialization)
//!   release  reason u8 (as in the record: 1 expired, 2 unrevealed, 3 holder),
//!            signature (by the bound TLS key for `holder`; empty otherwise)
//!   revoke   signature (by the bound TLS key)
//! ```
//!
//! A bind carries no token: the agent binds the id to its keys first and
//! reveals the token only once that binding is in the witnessed log
//! (`docs/protocol.md`). Decoding is strict: each length is bounded, nothing
//! may follow the last field, and re-encoding a decoded entry gives the same
//! bytes. [`LogEntry::record`] derives the entry's leaf record; an auditor
//! recomputes it from the entry and so checks every record the data plane
//! acted on.

use mazu_log::record::{LeafRecord, RecordBody, ReleaseReason, entry_digest};
use sha2::{Digest, Sha256};

/// Type tag of an entry.
pub const ENTRY_MAGIC: [u8; 4] = *b"MZLE";

/// The entry format version written and read by this code.
pub const ENTRY_VERSION: u8 = 3;

/// Longest token an entry may carry (64 KiB, the identity crate's hard limit).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Longest SubjectPublicKeyInfo an entry may carry.
pub const MAX_SPKI_LEN: usize = 4096;

/// Longest signature (proof of possession, release, revocation) an entry may
/// carry.
pub const MAX_SIGNATURE_LEN: usize = 1024;

/// Longest RBE registration an entry may carry (the largest capacity's
/// registration is about 1.6 MB).
pub const MAX_REGISTRATION_LEN: usize = 4 << 20;

/// One logged decision of the curator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Unix time in milliseconds when the curator logged it.
    pub at_ms: u64,
    /// The workload id, SHA-256 of its token.
    pub id: [u8; 32],
    /// What was decided.
    pub body: EntryBody,
}

/// The kind-specific part of a [`LogEntry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryBody {
    /// The id is bound to a TLS key and an RBE key in `slot`.
    Bind {
        /// The RBE slot.
        slot: u32,
        /// The token's `exp`, Unix seconds, as the holder committed to it
        /// in its proof of possession (the token itself comes later).
        token_expiry: u64,
        /// DER SubjectPublicKeyInfo of the workload's TLS key.
        tls_spki: Vec<u8>,
        /// The TLS key's signature over the proof-of-possession message.
        tls_signature: Vec<u8>,
        /// Canonical bytes of the RBE registration.
        registration: Vec<u8>,
    },
    /// The token whose SHA-256 is the id, revealed after its binding.
    Reveal {
        /// The JWT, as revealed.
        token: Vec<u8>,
    },
    /// The binding ended and its slot is free.
    Release {
        /// Why.
        reason: ReleaseReason,
        /// The bound TLS key's signature for [`ReleaseReason::Holder`];
        /// empty for releases the curator decides (expiry, unrevealed).
        signature: Vec<u8>,
    },
    /// The holder revoked the binding.
    Revoke {
        /// The bound TLS key's signature.
        signature: Vec<u8>,
    },
}

impl EntryBody {
    fn kind(&self) -> u8 {
        match self {
            EntryBody::Bind { .. } => 1,
            EntryBody::Reveal { .. } => 2,
            EntryBody::Release { .. } => 3,
            EntryBody::Revoke { .. } => 4,
        }
    }

    /// A stable lowercase name of the kind, for logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            EntryBody::Bind { .. } => "bind",
            EntryBody::Reveal { .. } => "reveal",
            EntryBody::Release { .. } => "release",
            EntryBody::Revoke { .. } => "revoke",
        }
    }
}

/// Why entry bytes did not decode, or an entry has no valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The type tag is not `"MZLE"`.
    #[error("not a log entry (bad type tag)")]
    BadMagic,
    /// A version this code does not read.
    #[error("unsupported log entry version {0}")]
    UnsupportedVersion(u8),
    /// A kind this code does not know.
    #[error("unknown log entry kind {0}")]
    UnknownKind(u8),
    /// A release reason this code does not know.
    #[error("unknown release reason {0}")]
    UnknownReason(u8),
    /// The bytes ended inside `field`.
    #[error("log entry truncated in {0}")]
    Truncated(&'static str),
    /// `field` is longer than its limit (or empty where that is not allowed).
    #[error("log entry field {field} has length {len}, out of range")]
    Length {
        /// The field.
        field: &'static str,
        /// Its declared length.
        len: u64,
    },
    /// Bytes after the last field.
    #[error("{0} trailing bytes after the log entry")]
    TrailingBytes(usize),
    /// A reveal whose token does not hash to the entry's id.
    #[error("the revealed token's SHA-256 is not the entry's id")]
    TokenIdMismatch,
    /// A reveal whose token has no readable `exp` claim.
    #[error("the revealed token has no readable expiry: {0}")]
    TokenExpiry(String),
}

impl LogEntry {
    /// The canonical bytes (see the [module docs](self)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(46 + 64);
        out.extend_from_slice(&ENTRY_MAGIC);
        out.push(ENTRY_VERSION);
        out.push(self.body.kind());
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        out.extend_from_slice(&self.id);
        let put = |out: &mut Vec<u8>, field: &[u8]| {
            // Lengths are bounded far below u32::MAX by the limits above.
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        };
        match &self.body {
            EntryBody::Bind {
                slot,
                token_expiry,
                tls_spki,
                tls_signature,
                registration,
            } => {
                out.extend_from_slice(&slot.to_be_bytes());
                out.extend_from_slice(&token_expiry.to_be_bytes());
                put(&mut out, tls_spki);
                put(&mut out, tls_signature);
                put(&mut out, registration);
            }
            EntryBody::Reveal { token } => put(&mut out, token),
            EntryBody::Release { reason, signature } => {
                out.push(reason.code());
                put(&mut out, signature);
            }
            EntryBody::Revoke { signature } => put(&mut out, signature),
        }
        out
    }

    /// Strictly decodes canonical entry bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EntryError> {
        let mut r = Cursor(bytes);
        if r.take(4, "type tag")? != ENTRY_MAGIC {
            return Err(EntryError::BadMagic);
        }
        let version = r.take(1, "version")?[0];
        if version != ENTRY_VERSION {
            return Err(EntryError::UnsupportedVersion(version));
        }
        let kind = r.take(1, "kind")?[0];
        let at_ms = u64::from_be_bytes(r.array("at_ms")?);
        let id = r.array("id")?;
        let body = match kind {
            1 => EntryBody::Bind {
                slot: u32::from_be_bytes(r.array("slot")?),
                token_expiry: u64::from_be_bytes(r.array("token_expiry")?),
                tls_spki: r.field("tls_spki", 1, MAX_SPKI_LEN)?,
                tls_signature: r.field("tls_signature", 1, MAX_SIGNATURE_LEN)?,
                registration: r.field("registration", 1, MAX_REGISTRATION_LEN)?,
            },
            2 => EntryBody::Reveal {
                token: r.field("token", 1, MAX_TOKEN_LEN)?,
            },
            3 => {
                let code = r.take(1, "reason")?[0];
                let reason =
                    ReleaseReason::from_code(code).ok_or(EntryError::UnknownReason(code))?;
                EntryBody::Release {
                    reason,
                    signature: r.field("signature", 0, MAX_SIGNATURE_LEN)?,
                }
            }
            4 => EntryBody::Revoke {
                signature: r.field("signature", 1, MAX_SIGNATURE_LEN)?,
            },
            other => return Err(EntryError::UnknownKind(other)),
        };
        if !r.0.is_empty() {
            return Err(EntryError::TrailingBytes(r.0.len()));
        }
        Ok(Self { at_ms, id, body })
    }

    /// Checks the field lengths an encoder must respect (the same limits the
    /// decoder enforces).
    pub fn check_lengths(&self) -> Result<(), EntryError> {
        let fields: &[(&'static str, usize, usize, usize)] = match &self.body {
            EntryBody::Bind {
                tls_spki,
                tls_signature,
                registration,
                ..
            } => &[
                ("tls_spki", tls_spki.len(), 1, MAX_SPKI_LEN),
                ("tls_signature", tls_signature.len(), 1, MAX_SIGNATURE_LEN),
                ("registration", registration.len(), 1, MAX_REGISTRATION_LEN),
            ],
            EntryBody::Reveal { token } => &[("token", token.len(), 1, MAX_TOKEN_LEN)],
            EntryBody::Release { signature, .. } => {
                &[("signature", signature.len(), 0, MAX_SIGNATURE_LEN)]
            }
            EntryBody::Revoke { signature } => {
                &[("signature", signature.len(), 1, MAX_SIGNATURE_LEN)]
            }
        };
        for &(field, len, min, max) in fields {
            if len < min || len > max {
                return Err(EntryError::Length {
                    field,
                    len: len as u64,
                });
            }
        }
        Ok(())
    }

    /// The leaf record that summarizes this entry, whose canonical bytes are
    /// `entry_bytes` (= [`to_bytes`](Self::to_bytes); passed in so that the
    /// digest is of the bytes actually stored).
    ///
    /// A reveal's token must hash to the id, and its `exp` claim (read, not
    /// verified: verifying it is the curator's job at reveal time and the
    /// auditor's afterwards) becomes the record's `token_expiry`.
    pub fn record(&self, entry_bytes: &[u8]) -> Result<LeafRecord, EntryError> {
        let body = match &self.body {
            EntryBody::Bind {
                slot,
                token_expiry,
                tls_spki,
                ..
            } => RecordBody::Bind {
                slot: *slot,
                spki_hash: Sha256::digest(tls_spki).into(),
                token_expiry: *token_expiry,
            },
            EntryBody::Reveal { token } => {
                if <[u8; 32]>::from(Sha256::digest(token)) != self.id {
                    return Err(EntryError::TokenIdMismatch);
                }
                let claims = mazu_identity::jwt::parse_claims_unverified(token, MAX_TOKEN_LEN)
                    .map_err(|e| EntryError::TokenExpiry(e.to_string()))?;
                RecordBody::Reveal {
                    token_expiry: claims.expires_at,
                }
            }
            EntryBody::Release { reason, .. } => RecordBody::Release { reason: *reason },
            EntryBody::Revoke { .. } => RecordBody::Revoke,
        };
        Ok(LeafRecord {
            at_ms: self.at_ms,
            id: self.id,
            entry_digest: entry_digest(entry_bytes),
            body,
        })
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EntryError> {
        let (head, tail) = self
            .0
            .split_at_checked(n)
            .ok_or(EntryError::Truncated(field))?;
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EntryError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn field(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Vec<u8>, EntryError> {
        let len = u32::from_be_bytes(self.array(field)?);
        let n = len as usize;
        if n < min || n > max {
            return Err(EntryError::Length {
                field,
                len: u64::from(len),
            });
        }
        Ok(self.take(n, field)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind() -> LogEntry {
        LogEntry {
            at_ms: 1_700_000_000_123,
            id: [7; 32],
            body: EntryBody::Bind {
                slot: 0x0102_0304,
                token_expiry: 1_800_000_000,
                tls_spki: vec![0x30, 0x59],
                tls_signature: vec![1; 64],
                registration: b"RBER\x01rest".to_vec(),
            },
        }
    }

    fn samples() -> Vec<LogEntry> {
        let with = |body| LogEntry { body, ..bind() };
        vec![
            bind(),
            with(EntryBody::Reveal {
                token: b"a.b.c".to_vec(),
            }),
            with(EntryBody::Release {
                reason: ReleaseReason::Unrevealed,
                signature: Vec::new(),
            }),
            with(EntryBody::Release {
                reason: ReleaseReason::Holder,
                signature: vec![2; 70],
            }),
            with(EntryBody::Revoke {
                signature: vec![3; 70],
            }),
        ]
    }

    #[test]
    fn exact_layout_of_a_bind() {
        let bytes = bind().to_bytes();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"MZLE\x03\x01");
        expected.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&[1, 2, 3, 4]);
        expected.extend_from_slice(&1_800_000_000u64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 2, 0x30, 0x59]);
        expected.extend_from_slice(&[0, 0, 0, 64]);
        expected.extend_from_slice(&[1; 64]);
        expected.extend_from_slice(&[0, 0, 0, 9]);
        expected.extend_from_slice(b"RBER\x01rest");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_kind_round_trips_and_decodes_strictly() {
        for entry in samples() {
            let bytes = entry.to_bytes();
            assert_eq!(LogEntry::from_bytes(&bytes).unwrap(), entry);
            assert!(entry.check_lengths().is_ok());
            for cut in 0..bytes.len() {
                assert!(LogEntry::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(
                LogEntry::from_bytes(&long),
                Err(EntryError::TrailingBytes(1))
            );
        }
        let bytes = bind().to_bytes();
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(
            LogEntry::from_bytes(&v2),
            Err(EntryError::UnsupportedVersion(2))
        );
        let mut kind = bytes.clone();
        kind[5] = 9;
        assert_eq!(LogEntry::from_bytes(&kind), Err(EntryError::UnknownKind(9)));
        let mut tag = bytes;
        tag[0] = b'X';
        assert_eq!(LogEntry::from_bytes(&tag), Err(EntryError::BadMagic));
    }

    #[test]
    fn empty_fields_are_not_canonical_except_a_curator_release_signature() {
        let mut empty = bind();
        if let EntryBody::Bind { tls_signature, .. } = &mut empty.body {
            tls_signature.clear();
        }
        assert!(empty.check_lengths().is_err());
        assert!(matches!(
            LogEntry::from_bytes(&empty.to_bytes()),
            Err(EntryError::Length {
                field: "tls_signature",
                ..
            })
        ));
        let revoke = LogEntry {
            body: EntryBody::Revoke {
                signature: Vec::new(),
            },
            ..bind()
        };
        assert!(LogEntry::from_bytes(&revoke.to_bytes()).is_err());
    }

    #[test]
    fn records_summarize_their_entries() {
        let entry = bind();
        let bytes = entry.to_bytes();
        let record = entry.record(&bytes).unwrap();
        assert_eq!(record.id, entry.id);
        assert_eq!(record.at_ms, entry.at_ms);
        assert_eq!(record.entry_digest, entry_digest(&bytes));
        assert_eq!(
            record.body,
            RecordBody::Bind {
                slot: 0x0102_0304,
                spki_hash: Sha256::digest([0x30, 0x59]).into(),
                token_expiry: 1_800_000_000,
            }
        );
    }

    #[test]
    fn a_reveal_must_carry_the_token_of_its_id() {
        // A real token (dev issuer); the record reads its expiry without
        // verifying it.
        let issuer = mazu_dev_issuer::DevIssuer::generate(
            mazu_dev_issuer::Algorithm::Es256,
            mazu_dev_issuer::DEFAULT_ISSUER_URL,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let token = issuer
            .mint(&mazu_dev_issuer::TokenRequest::new("shop", "cart"))
            .unwrap()
            .into_bytes();
        let expiry = mazu_identity::jwt::parse_claims_unverified(&token, MAX_TOKEN_LEN)
            .unwrap()
            .expires_at;
        assert!(expiry > 0);
        let good = LogEntry {
            at_ms: 5,
            id: Sha256::digest(&token).into(),
            body: EntryBody::Reveal { token },
        };
        let bytes = good.to_bytes();
        assert_eq!(
            good.record(&bytes).unwrap().body,
            RecordBody::Reveal {
                token_expiry: expiry
            }
        );
        let wrong_id = LogEntry {
            id: [1; 32],
            ..good
        };
        assert_eq!(
            wrong_id.record(&wrong_id.to_bytes()),
            Err(EntryError::TokenIdMismatch)
        );
    }
}
