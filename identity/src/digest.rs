//! The SHA-256 digests that Mazu names: workload IDs, claims digests, key hashes.
//!
//! Each is its own type so that a key hash can never be compared with a workload
//! ID by accident; all print as lowercase hex.

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A hex string that is not exactly 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hexadecimal digits")]
#[non_exhaustive]
pub struct ParseDigestError;

/// Lowercase hex of 32 bytes.
fn write_hex(bytes: &[u8; 32], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    // Only ASCII hex digits were written.
    f.write_str(core::str::from_utf8(&out).map_err(|_| fmt::Error)?)
}

/// Parses exactly 64 hex digits (either case).
fn parse_hex(text: &str) -> Result<[u8; 32], ParseDigestError> {
    fn nibble(c: u8) -> Result<u8, ParseDigestError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(ParseDigestError),
        }
    }
    let text = text.as_bytes();
    if text.len() != 64 {
        return Err(ParseDigestError);
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

macro_rules! sha256_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = 32;

            /// Wraps an already computed digest.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw digest bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Parses 64 hex digits.
            pub fn from_hex(text: &str) -> Result<Self, ParseDigestError> {
                parse_hex(text).map(Self)
            }

            /// Constant-time equality, for comparisons where timing must not
            /// reveal how many leading bytes matched.
            pub fn ct_eq(&self, other: &Self) -> bool {
                bool::from(self.0.ct_eq(&other.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                write_hex(&self.0, f)?;
                f.write_str(")")
            }
        }

        impl FromStr for $name {
            type Err = ParseDigestError;
            fn from_str(text: &str) -> Result<Self, ParseDigestError> {
                Self::from_hex(text)
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
        }
    };
}

sha256_newtype!(
    /// A workload's ID: SHA-256 of its service-account token, byte for byte as
    /// it appears in the certificate extension.
    WorkloadId
);

sha256_newtype!(
    /// SHA-256 of a JWT's signing input (`base64url(header) "." base64url(claims)`).
    ///
    /// Unlike the [`WorkloadId`], it does not cover the signature segment, so the
    /// re-encodings of one signed token that a token thief can produce (ECDSA
    /// `(r, n - s)`, for one) all share it. The curator refuses a second
    /// registration with a known claims digest.
    ClaimsDigest
);

sha256_newtype!(
    /// SHA-256 of a DER-encoded `SubjectPublicKeyInfo`: the TLS key a workload
    /// registered, compared with the key of the certificate it presents.
    SpkiHash
);

impl WorkloadId {
    /// The ID of a token: SHA-256 over its exact bytes.
    pub fn of_token(token: &[u8]) -> Self {
        Self(sha256(token))
    }
}

impl ClaimsDigest {
    /// The digest of a JWT signing input (`header.payload`, as ASCII).
    pub fn of_signing_input(signing_input: &[u8]) -> Self {
        Self(sha256(signing_input))
    }
}

impl SpkiHash {
    /// The hash of a DER-encoded `SubjectPublicKeyInfo`.
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Self(sha256(spki_der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[test]
    fn known_vector_and_hex_round_trip() {
        let id = WorkloadId::of_token(b"abc");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(id.to_string(), hex);
        assert_eq!(WorkloadId::from_hex(hex), Ok(id));
        assert_eq!(WorkloadId::from_hex(&hex.to_uppercase()), Ok(id));
        assert_eq!(format!("{id:?}"), format!("WorkloadId({hex})"));
        assert!(id.ct_eq(&id));
        assert!(!id.ct_eq(&WorkloadId::from_bytes([0; 32])));
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!("00".parse::<SpkiHash>(), Err(ParseDigestError));
        assert_eq!("g".repeat(64).parse::<SpkiHash>(), Err(ParseDigestError));
        assert_eq!("é".repeat(32).parse::<SpkiHash>(), Err(ParseDigestError));
    }
}
