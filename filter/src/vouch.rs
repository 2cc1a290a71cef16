//! The handshake validator's word on a token signature, handed to the
//! inbound filter on the connection it checked.
//!
//! In a sidecar with both Mazu layers, the native validator
//! (`mazu-validator`) decides the client in the TLS handshake, token
//! signature included; the filter then decides the same certificate again at
//! the first byte. The signature is the one costly step (ES256 about 2 ms
//! in V8), so the validator leaves, in the connection's filter state under
//! [`FILTER_STATE_KEY`], which token it verified and under which `trust`
//! object:
//!
//! ```text
//! v1 <SHA-256 of the trust object, canonical JSON, hex> <workload id, hex>
//! ```
//!
//! The filter skips only that token's signature check, and only when the
//! trust digest is its own ([`vouched_id`]); every other check of the
//! verdict runs against its own registry ([`mazu_identity::Verifier::verdict_vouched`]).
//! Anything else (absent, another trust object, malformed) means the filter
//! verifies the signature itself.
//!
//! Who can write the key: the validator, in the handshake (Envoy stores it
//! read-only, so it cannot be overwritten afterwards), and any filter the
//! proxy's own configuration puts before this one. The peer cannot: nothing
//! it sends names a filter-state key. A configuration that adds such a filter
//! could as well leave this filter out, so the handoff trusts nothing the
//! configuration did not already hold.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use mazu_identity::WorkloadId;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The connection filter-state key the validator writes.
pub const FILTER_STATE_KEY: &str = "mazu.validator.signature_vouched";

/// The only version of the value.
const VERSION: &str = "v1";

/// SHA-256 of a `trust` object in canonical form (object keys sorted, no
/// whitespace): the same for the filter's and the validator's copies of one
/// object however each is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustDigest([u8; 32]);

impl TrustDigest {
    /// The digest of a parsed `trust` object.
    pub fn of(trust: &Value) -> TrustDigest {
        let mut canonical = Vec::new();
        write_canonical(trust, &mut canonical);
        TrustDigest(Sha256::digest(&canonical).into())
    }

    /// The digest of `trust_json`, or `None` if it is not JSON.
    pub fn of_json(trust_json: &[u8]) -> Option<TrustDigest> {
        serde_json::from_slice::<Value>(trust_json)
            .ok()
            .map(|value| TrustDigest::of(&value))
    }
}

/// JSON with object keys in byte order and no whitespace. Scalars are
/// written as serde_json writes them.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(members) => {
            let mut sorted: Vec<_> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(member, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write!(text, "{value}");
    out.extend_from_slice(text.as_bytes());
}

/// The value the validator writes for `workload_id`, verified under the
/// trust object whose digest is `trust`.
pub fn encode(trust: &TrustDigest, workload_id: &WorkloadId) -> String {
    let mut value = String::with_capacity(2 + 1 + 64 + 1 + 64);
    value.push_str(VERSION);
    value.push(' ');
    value.push_str(&encode_digest(trust));
    value.push(' ');
    let _ = write!(value, "{workload_id}");
    value
}

/// The workload id whose token signature `value` vouches for, if `value` is
/// a well-formed handoff made under the trust object `trust`.
pub fn vouched_id(value: &[u8], trust: &TrustDigest) -> Option<WorkloadId> {
    let text = core::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    let (Some(VERSION), Some(digest), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if digest.len() != 64 || !digest.eq_ignore_ascii_case(&encode_digest(trust)) {
        return None;
    }
    WorkloadId::from_hex(id).ok()
}

fn encode_digest(trust: &TrustDigest) -> String {
    let mut hex = String::with_capacity(64);
    for byte in trust.0 {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUST: &str = r#"{"trust_domain":"cluster.local","audience":"mazu:a",
        "issuers":[{"issuer":"https://k","namespaces":["*"],"jwks":{"keys":[]}}]}"#;

    #[test]
    fn the_digest_ignores_layout_and_key_order_but_not_content() {
        let reordered = r#"{ "issuers" : [ {"jwks":{"keys":[]},"namespaces":["*"],
            "issuer":"https://k"} ], "audience":"mazu:a", "trust_domain":"cluster.local" }"#;
        let digest = TrustDigest::of_json(TRUST.as_bytes()).unwrap();
        assert_eq!(TrustDigest::of_json(reordered.as_bytes()), Some(digest));
        let other = TRUST.replace("mazu:a", "mazu:b");
        assert_ne!(TrustDigest::of_json(other.as_bytes()), Some(digest));
        // Array order is content.
        let two = r#"{"a":[1,2]}"#;
        let swapped = r#"{"a":[2,1]}"#;
        assert_ne!(
            TrustDigest::of_json(two.as_bytes()),
            TrustDigest::of_json(swapped.as_bytes())
        );
        assert_eq!(TrustDigest::of_json(b"{not json"), None);
    }

    #[test]
    fn only_a_well_formed_value_under_the_same_trust_vouches() {
        let trust = TrustDigest::of_json(TRUST.as_bytes()).unwrap();
        let id = WorkloadId::of_token(b"token");
        let value = encode(&trust, &id);
        assert_eq!(vouched_id(value.as_bytes(), &trust), Some(id));
        assert_eq!(vouched_id(value.to_uppercase().as_bytes(), &trust), None);

        let other = TrustDigest::of_json(TRUST.replace("mazu:a", "mazu:b").as_bytes()).unwrap();
        assert_eq!(vouched_id(value.as_bytes(), &other), None);
        for bad in [
            String::new(),
            value.replacen("v1", "v2", 1),
            format!("{value} extra"),
            value[..value.len() - 1].to_string(),
            value.replacen(' ', "  ", 1),
            format!("{value}\n"),
        ] {
            assert_eq!(vouched_id(bad.as_bytes(), &trust), None, "{bad:?}");
        }
        assert_eq!(vouched_id(&[0xff, 0xfe], &trust), None);
    }
}
