//! Token surgery: re-encoding segments, flipping bits, HMAC for the
//! "public key as HMAC secret" attack.

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};

pub fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    Base64UrlUnpadded::decode_vec(text).expect("canonical base64url")
}

/// The three segments of a token.
pub fn segments(token: &[u8]) -> [String; 3] {
    let text = core::str::from_utf8(token).expect("ascii token");
    let parts: Vec<&str> = text.split('.').collect();
    assert_eq!(parts.len(), 3, "token has three segments");
    [
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
    ]
}

pub fn join(header: &str, payload: &str, signature: &str) -> Vec<u8> {
    format!("{header}.{payload}.{signature}").into_bytes()
}

/// Sets a trailing (unused) bit of the last base64url character: decodes to
/// the same bytes under a lenient decoder, so the strict one must refuse it.
/// Requires a segment whose length is not a multiple of 4.
pub fn non_canonical(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(segment.len() % 4, 0, "segment must end in a partial block");
    let mut bytes = segment.as_bytes().to_vec();
    let last = bytes.last_mut().unwrap();
    let value = ALPHABET.iter().position(|c| c == last).unwrap();
    assert_eq!(value & 1, 0, "trailing bits are zero in canonical form");
    *last = ALPHABET[value | 1];
    String::from_utf8(bytes).unwrap()
}

/// Flips one bit of the decoded signature.
pub fn flip_signature_bit(token: &[u8]) -> Vec<u8> {
    let [h, p, s] = segments(token);
    let mut sig = unb64(&s);
    sig[10] ^= 0x01;
    join(&h, &p, &b64(&sig))
}

/// HMAC-SHA256 (RFC 2104), written out so the test needs no HMAC crate and
/// the crate under test has none either.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    block.resize(64, 0);
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}
