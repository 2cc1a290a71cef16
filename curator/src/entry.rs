//! The log entry: one accepted registration as self-contained canonical bytes.
//!
//! ```text
//! entry = "MZLE"            4 bytes, type tag
//!         version           1 byte, ENTRY_VERSION (= 1)
//!         accepted_at_ms    u64 big-endian, Unix time in milliseconds when the
//!                           curator accepted the registration
//!         token             u32 big-endian length, then the JWT exactly as sent
//!                           (ASCII, compact serialization)
//!         tls_spki          u32 length, then the DER SubjectPublicKeyInfo
//!         tls_signature     u32 length, then the proof-of-possession signature
//!                           exactly as sent (see crate::pop)
//!         registration      u32 length, then the RBE registration's canonical
//!                           bytes (mazu_rbe::Registration::to_bytes)
//! ```
//!
//! Decoding is strict: each length is bounded, nothing may follow the last
//! field, and re-encoding a decoded entry gives the same bytes. The entry holds
//! everything needed to re-verify the registration (given the issuer's keys at
//! `accepted_at_ms`) and to recompute the curator's state, so an auditor needs
//! only the log. Its leaf hash for an RFC 6962 Merkle tree is
//! [`LogEntry::leaf_hash`] = `SHA-256(0x00 || entry)`.

use sha2::{Digest, Sha256};

/// Type tag of an entry.
pub const ENTRY_MAGIC: [u8; 4] = *b"MZLE";

/// The entry format version written and read by this code.
pub const ENTRY_VERSION: u8 = 1;

/// Longest token an entry may carry (64 KiB, the identity crate's hard limit).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Longest SubjectPublicKeyInfo an entry may carry.
pub const MAX_SPKI_LEN: usize = 4096;

/// Longest proof-of-possession signature an entry may carry.
pub const MAX_SIGNATURE_LEN: usize = 1024;

/// Longest RBE registration an entry may carry (the largest capacity's
/// registration is about 1.6 MB).
pub const MAX_REGISTRATION_LEN: usize = 4 << 20;

/// One accepted registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Unix time in milliseconds when the curator accepted it.
    pub accepted_at_ms: u64,
    /// The workload's token (JWT), as sent.
    pub token: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the workload's TLS key.
    pub tls_spki: Vec<u8>,
    /// The TLS key's signature over the proof-of-possession message.
    pub tls_signature: Vec<u8>,
    /// Canonical bytes of the RBE registration.
    pub registration: Vec<u8>,
}

/// Why entry bytes did not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The type tag is not `"MZLE"`.
    #[error("not a log entry (bad type tag)")]
    BadMagic,
    /// A version this code does not read.
    #[error("unsupported log entry version {0}")]
    UnsupportedVersion(u8),
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
}

impl LogEntry {
    /// The canonical bytes (see the [module docs](self)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + 1
                + 8
                + 16
                + self.token.len()
                + self.tls_spki.len()
                + self.tls_signature.len()
                + self.registration.len(),
        );
        out.extend_from_slice(&ENTRY_MAGIC);
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.accepted_at_ms.to_be_bytes());
        for field in [
            &self.token,
            &self.tls_spki,
            &self.tls_signature,
            &self.registration,
        ] {
            // Lengths are bounded far below u32::MAX by the limits above.
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
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
        let mut ts = [0u8; 8];
        ts.copy_from_slice(r.take(8, "accepted_at_ms")?);
        let entry = Self {
            accepted_at_ms: u64::from_be_bytes(ts),
            token: r.field("token", MAX_TOKEN_LEN)?,
            tls_spki: r.field("tls_spki", MAX_SPKI_LEN)?,
            tls_signature: r.field("tls_signature", MAX_SIGNATURE_LEN)?,
            registration: r.field("registration", MAX_REGISTRATION_LEN)?,
        };
        if !r.0.is_empty() {
            return Err(EntryError::TrailingBytes(r.0.len()));
        }
        Ok(entry)
    }

    /// Checks the field lengths an encoder must respect (the same limits the
    /// decoder enforces).
    pub fn check_lengths(&self) -> Result<(), EntryError> {
        for (field, len, max) in [
            ("token", self.token.len(), MAX_TOKEN_LEN),
            ("tls_spki", self.tls_spki.len(), MAX_SPKI_LEN),
            ("tls_signature", self.tls_signature.len(), MAX_SIGNATURE_LEN),
            (
                "registration",
                self.registration.len(),
                MAX_REGISTRATION_LEN,
            ),
        ] {
            if len == 0 || len > max {
                return Err(EntryError::Length {
                    field,
                    len: len as u64,
                });
            }
        }
        Ok(())
    }

    /// The RFC 6962 leaf hash of these entry bytes.
    pub fn leaf_hash(entry_bytes: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0x00]);
        h.update(entry_bytes);
        h.finalize().into()
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EntryError> {
        if self.0.len() < n {
            return Err(EntryError::Truncated(field));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn field(&mut self, field: &'static str, max: usize) -> Result<Vec<u8>, EntryError> {
        let mut len = [0u8; 4];
        len.copy_from_slice(self.take(4, field)?);
        let len = u32::from_be_bytes(len);
        let n = len as usize;
        if n == 0 || n > max {
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

    fn sample() -> LogEntry {
        LogEntry {
            accepted_at_ms: 1_700_000_000_123,
            token: b"a.b.c".to_vec(),
            tls_spki: vec![0x30, 0x59],
            tls_signature: vec![1; 64],
            registration: b"RBER\x01rest".to_vec(),
        }
    }

    #[test]
    fn round_trip_and_exact_layout() {
        let e = sample();
        let bytes = e.to_bytes();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"MZLE\x01");
        expected.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"a.b.c");
        expected.extend_from_slice(&[0, 0, 0, 2, 0x30, 0x59]);
        expected.extend_from_slice(&[0, 0, 0, 64]);
        expected.extend_from_slice(&[1; 64]);
        expected.extend_from_slice(&[0, 0, 0, 9]);
        expected.extend_from_slice(b"RBER\x01rest");
        assert_eq!(bytes, expected);
        assert_eq!(LogEntry::from_bytes(&bytes).unwrap(), e);
        assert!(e.check_lengths().is_ok());
    }

    #[test]
    fn strict_decoding() {
        let bytes = sample().to_bytes();
        for cut in 0..bytes.len() {
            assert!(LogEntry::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            LogEntry::from_bytes(&long),
            Err(EntryError::TrailingBytes(1))
        );
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(
            LogEntry::from_bytes(&v2),
            Err(EntryError::UnsupportedVersion(2))
        );
        let mut tag = bytes.clone();
        tag[0] = b'X';
        assert_eq!(LogEntry::from_bytes(&tag), Err(EntryError::BadMagic));
        // An empty field is not canonical.
        let mut empty = sample();
        empty.tls_signature.clear();
        assert!(empty.check_lengths().is_err());
        assert!(matches!(
            LogEntry::from_bytes(&empty.to_bytes()),
            Err(EntryError::Length {
                field: "tls_signature",
                ..
            })
        ));
    }

    #[test]
    fn leaf_hash_is_rfc6962() {
        // SHA-256 of the single byte 0x00 (the leaf hash of an empty entry).
        assert_eq!(
            hex::encode(LogEntry::leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
