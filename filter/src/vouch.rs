//! The handshake validator's word on a client, handed to the inbound
//! filter on the connection it checked.
//!
//! In a sidecar with both Mazu layers, the native validator
//! (`mazu-validator`) decides the client in the TLS handshake; the filter
//! then decides the same certificate again at the first byte. So that the
//! filter does not redo in V8 what native code just did, the validator
//! leaves its verdict in the connection's filter state under
//! [`FILTER_STATE_KEY`]:
//!
//! ```text
//! v2 <trust digest> <certificate digest> <workload id> <SPKI hash> <valid until> <SPIFFE ID>
//! ```
//!
//! The digests are lowercase hex SHA-256: of the `trust` object in
//! canonical JSON ([`TrustDigest`]), of the DER leaf certificate, of the
//! token (the workload id) and of the certificate's `SubjectPublicKeyInfo`;
//! `valid until` is the verdict's Unix second (the earlier of the token's
//! expiry and the certificate's `notAfter`). The filter takes that word
//! ([`VouchedVerdict`]) only when the trust digest is its own and the
//! certificate digest is the one Envoy reports for this connection, and
//! even then checks the binding against its **own** registry: the id is
//! registered there, not revoked, bound to that SPKI hash, and its
//! registration has not expired (`Engine`'s vouched path). Any of those
//! failing, it runs the whole verdict itself, taking only the token's
//! signature as checked. A previous validator's value,
//! `v1 <trust digest> <workload id>`, vouches for that signature alone
//! ([`Vouch::Signature`]).
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

use mazu_identity::{SpiffeId, SpkiHash, WorkloadId};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::engine::parse_hex_digest;

/// The connection filter-state key the validator writes.
pub const FILTER_STATE_KEY: &str = "mazu.validator.signature_vouched";

/// The value that vouches for a token's signature only.
const SIGNATURE: &str = "v1";
/// The value that vouches for the whole verdict.
const VERDICT: &str = "v2";

/// What the validator's word covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vouch {
    /// The token of this workload id is signed by a trusted issuer.
    Signature(WorkloadId),
    /// The certificate passed every check of the verdict.
    Verdict(VouchedVerdict),
}

impl Vouch {
    /// The workload id whose token signature is vouched for (in either form).
    pub fn workload_id(&self) -> WorkloadId {
        match self {
            Vouch::Signature(id) => *id,
            Vouch::Verdict(verdict) => verdict.workload_id,
        }
    }
}

/// The validator's verdict on one certificate: it was allowed, with these
/// facts, under the trust object the value names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VouchedVerdict {
    /// SHA-256 of the DER leaf certificate.
    pub certificate_digest: [u8; 32],
    /// SHA-256 of the token it carries.
    pub workload_id: WorkloadId,
    /// SHA-256 of its `SubjectPublicKeyInfo`.
    pub spki_hash: SpkiHash,
    /// Unix second after which the verdict no longer holds.
    pub valid_until: u64,
    /// Its SPIFFE ID.
    pub spiffe_id: SpiffeId,
}

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

/// The value that vouches for `workload_id`'s token signature only,
/// verified under the trust object whose digest is `trust` (what a
/// validator before the whole-verdict value wrote).
pub fn encode_signature(trust: &TrustDigest, workload_id: &WorkloadId) -> String {
    let mut value = String::with_capacity(2 + 1 + 64 + 1 + 64);
    value.push_str(SIGNATURE);
    value.push(' ');
    value.push_str(&hex(&trust.0));
    value.push(' ');
    let _ = write!(value, "{workload_id}");
    value
}

/// The value the validator writes for a certificate it allowed under the
/// trust object whose digest is `trust`.
pub fn encode_verdict(trust: &TrustDigest, verdict: &VouchedVerdict) -> String {
    let mut value = String::with_capacity(2 + 4 * 65 + 21 + 1 + verdict.spiffe_id.as_str().len());
    let _ = write!(
        value,
        "{VERDICT} {} {} {} {} {} {}",
        hex(&trust.0),
        hex(&verdict.certificate_digest),
        verdict.workload_id,
        verdict.spki_hash,
        verdict.valid_until,
        verdict.spiffe_id.as_str(),
    );
    value
}

/// What `value` vouches for, if it is a well-formed value made under the
/// trust object `trust`. Hex is read in lowercase only (as written).
pub fn parse(value: &[u8], trust: &TrustDigest) -> Option<Vouch> {
    let text = core::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    let version = parts.next()?;
    if parts.next()? != hex(&trust.0) {
        return None;
    }
    let vouch = match version {
        SIGNATURE => Vouch::Signature(WorkloadId::from_bytes(lowercase_hex(parts.next()?)?)),
        VERDICT => Vouch::Verdict(VouchedVerdict {
            certificate_digest: lowercase_hex(parts.next()?)?,
            workload_id: WorkloadId::from_bytes(lowercase_hex(parts.next()?)?),
            spki_hash: SpkiHash::from_bytes(lowercase_hex(parts.next()?)?),
            valid_until: decimal(parts.next()?)?,
            spiffe_id: SpiffeId::parse(parts.next()?).ok()?,
        }),
        _ => return None,
    };
    parts.next().is_none().then_some(vouch)
}

/// 64 lowercase hex digits.
fn lowercase_hex(text: &str) -> Option<[u8; 32]> {
    let lowercase = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    lowercase
        .then(|| parse_hex_digest(text.as_bytes()))
        .flatten()
}

/// A Unix second in canonical decimal (no sign, no leading zero).
fn decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn hex(bytes: &[u8; 32]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in bytes {
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

    fn verdict() -> VouchedVerdict {
        VouchedVerdict {
            certificate_digest: [0xc3; 32],
            workload_id: WorkloadId::of_token(b"token"),
            spki_hash: SpkiHash::of_spki_der(b"spki"),
            valid_until: 1_800_003_600,
            spiffe_id: SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/cart").unwrap(),
        }
    }

    #[test]
    fn only_a_well_formed_value_under_the_same_trust_vouches() {
        let trust = TrustDigest::of_json(TRUST.as_bytes()).unwrap();
        let other = TrustDigest::of_json(TRUST.replace("mazu:a", "mazu:b").as_bytes()).unwrap();
        let id = WorkloadId::of_token(b"token");
        let signature = encode_signature(&trust, &id);
        let whole = encode_verdict(&trust, &verdict());
        assert_eq!(
            parse(signature.as_bytes(), &trust),
            Some(Vouch::Signature(id))
        );
        assert_eq!(
            parse(whole.as_bytes(), &trust),
            Some(Vouch::Verdict(verdict()))
        );
        assert_eq!(
            parse(whole.as_bytes(), &trust).map(|vouch| vouch.workload_id()),
            Some(id)
        );
        assert_eq!(
            parse(&signature.as_bytes()[..signature.len() - 1], &trust),
            None
        );
        for value in [&signature, &whole] {
            assert_eq!(parse(value.as_bytes(), &other), None);
            assert_eq!(parse(value.to_uppercase().as_bytes(), &trust), None);
            for bad in [
                String::new(),
                value.replacen("v", "w", 1),
                format!("{value} extra"),
                value.replacen(' ', "  ", 1),
                format!("{value}\n"),
                format!(" {value}"),
            ] {
                assert_eq!(parse(bad.as_bytes(), &trust), None, "{bad:?}");
            }
        }
        // Each field of the whole verdict is checked.
        let fields: Vec<&str> = whole.split(' ').collect();
        for (at, bad) in [
            (0, "v3"),
            (2, "c3c3"),
            (3, "zz"),
            (4, &*"A".repeat(64)),
            (5, "-1"),
            (5, "0123"),
            (5, "18446744073709551616"),
            (6, "https://cluster.local/ns/shop/sa/cart"),
        ] {
            let mut altered = fields.clone();
            altered[at] = bad;
            assert_eq!(
                parse(altered.join(" ").as_bytes(), &trust),
                None,
                "{at}: {bad}"
            );
        }
        assert_eq!(parse(&[0xff, 0xfe], &trust), None);
    }
}
