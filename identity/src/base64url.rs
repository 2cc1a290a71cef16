//! Strict base64url (RFC 4648 §5, no padding) as JWS compact serialization requires.
//!
//! Strictness is a security property here, not pedantry: a workload's ID is the
//! SHA-256 of the token *bytes*, so any decoder leniency (padding, whitespace,
//! non-zero trailing bits) would let a holder of a stolen token derive a second
//! byte string that still verifies, i.e. a second ID for the same token content.

use alloc::vec::Vec;
use base64ct::{Base64UrlUnpadded, Encoding};

/// Decodes canonical unpadded base64url; `None` for anything else.
///
/// `base64ct` already rejects padding, characters outside the URL-safe alphabet
/// and non-zero trailing bits (it re-encodes the last block and compares);
/// the tests in this module pin that behaviour so a dependency update that
/// relaxes it is caught.
pub(crate) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let text = core::str::from_utf8(input).ok()?;
    Base64UrlUnpadded::decode_vec(text).ok()
}

/// Encodes bytes as unpadded base64url (tests build tokens with it).
#[cfg(test)]
pub(crate) fn encode(input: &[u8]) -> alloc::string::String {
    Base64UrlUnpadded::encode_string(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode(encode(&data).as_bytes()).as_deref(), Some(&data[..]));
        }
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // "AA" is the canonical encoding of [0x00]; "AB" sets a trailing bit.
        assert_eq!(decode(b"AA").as_deref(), Some(&[0u8][..]));
        assert_eq!(decode(b"AB"), None);
        // Two bytes: three characters, the last carries two trailing bits.
        assert_eq!(decode(b"AAA").as_deref(), Some(&[0u8, 0][..]));
        assert_eq!(decode(b"AAB"), None);
    }

    #[test]
    fn rejects_padding_whitespace_and_standard_alphabet() {
        assert_eq!(decode(b"AA=="), None);
        assert_eq!(decode(b"AA "), None);
        assert_eq!(decode(b" AA"), None);
        assert_eq!(decode(b"A\nA"), None);
        assert_eq!(decode(b"+/8"), None);
        assert_eq!(decode(b"-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        // A single character can never be a valid length.
        assert_eq!(decode(b"A"), None);
        assert_eq!(decode(&[0xff, 0xfe]), None);
    }
}
