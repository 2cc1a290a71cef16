//! Kubernetes service-account tokens: compact JWS (RFC 7515) JWTs (RFC 7519)
//! verified against the issuers' JWKS.
//!
//! Refusals are typed ([`TokenError`]) and each has a stable name. The parser
//! is strict wherever leniency would let one signed token have two byte
//! encodings (and so two workload IDs): canonical base64url only, no duplicate
//! JSON keys, exactly three segments.

mod claims;
mod compact;
mod error;
mod header;
mod verify;

pub use claims::{Claims, KubernetesClaims, ObjectRef};
pub use error::{TokenError, TokenPart};
pub use header::Algorithm;
pub use verify::{
    DEFAULT_CLOCK_SKEW_SECS, DEFAULT_MAX_TOKEN_LEN, Issuer, MAX_CLOCK_SKEW_SECS, SignatureBackend,
    TOKEN_LEN_LIMIT_RANGE, TokenPolicy, VerifiedToken,
};

pub(crate) use compact::Compact;
pub(crate) use header::Header;

/// Reads a token's claims **without verifying anything but their shape**.
///
/// For the node agent, which holds a token kubelet just wrote and needs its
/// namespace, service account and expiry to build a certificate. Never use the
/// result to make a trust decision: use [`TokenPolicy::verify`].
pub fn parse_claims_unverified(token: &[u8], max_token_len: usize) -> Result<Claims, TokenError> {
    if token.len() > max_token_len {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: max_token_len,
        });
    }
    let compact = Compact::split(token)?;
    let header_json = crate::base64url::decode(compact.header)
        .ok_or(TokenError::MalformedBase64(TokenPart::Header))?;
    Header::parse(&header_json)?;
    crate::base64url::decode(compact.signature)
        .ok_or(TokenError::MalformedBase64(TokenPart::Signature))?;
    let payload_json = crate::base64url::decode(compact.payload)
        .ok_or(TokenError::MalformedBase64(TokenPart::Payload))?;
    Claims::parse(&payload_json)
}
