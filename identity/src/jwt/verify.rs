//! Token verification: signature against the configured JWKS, then policy.

use alloc::string::String;
use alloc::vec::Vec;
use signature_check::verify_signature;

use super::claims::Claims;
use super::compact::Compact;
use super::error::{TokenError, TokenPart};
use super::header::Header;
use crate::base64url;
use crate::digest::{ClaimsDigest, WorkloadId};
use crate::jwks::{Jwk, Jwks};
use crate::trust::NamespaceScope;

/// Default tolerated clock difference, in seconds.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;
/// Largest clock skew a configuration may set, in seconds.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;
/// Default token size limit. Kubernetes tokens are about 1 KiB.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Bounds for a configured token size limit.
pub const TOKEN_LEN_LIMIT_RANGE: core::ops::RangeInclusive<usize> = 512..=64 * 1024;

/// A token issuer Mazu trusts: its `iss` value, its keys and the namespaces
/// it may assert.
#[derive(Clone, Debug)]
pub struct Issuer {
    url: String,
    jwks: Jwks,
    scope: NamespaceScope,
}

impl Issuer {
    /// An issuer from its `iss` URL, its parsed JWKS and its namespace scope.
    pub fn new(url: impl Into<String>, jwks: Jwks, scope: NamespaceScope) -> Self {
        Self {
            url: url.into(),
            jwks,
            scope,
        }
    }

    /// The namespaces this issuer's tokens may name.
    pub fn scope(&self) -> &NamespaceScope {
        &self.scope
    }

    /// The `iss` value tokens of this issuer carry.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The issuer's keys.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }
}

/// What a token must satisfy. Built (and validated) by
/// [`TrustConfig`](crate::TrustConfig); usable alone by the curator.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    issuers: Vec<Issuer>,
    audience: String,
    clock_skew_secs: u64,
    max_token_len: usize,
}

/// A token whose signature, issuer, audience, times and claims all checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// The claims.
    pub claims: Claims,
    /// SHA-256 of the token bytes.
    pub workload_id: WorkloadId,
    /// SHA-256 of `header.payload`: equal for every re-encoding of one signed
    /// token (see [`ClaimsDigest`]).
    pub claims_digest: ClaimsDigest,
}

impl TokenPolicy {
    /// A policy; the caller ([`TrustConfig`](crate::TrustConfig)'s builder)
    /// has validated the values, including that no `kid` is at two issuers.
    pub(crate) fn new(
        issuers: Vec<Issuer>,
        audience: String,
        clock_skew_secs: u64,
        max_token_len: usize,
    ) -> Self {
        Self {
            issuers,
            audience,
            clock_skew_secs,
            max_token_len,
        }
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// The audience tokens must carry (and carry alone).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Tolerated clock difference, seconds.
    pub fn clock_skew_secs(&self) -> u64 {
        self.clock_skew_secs
    }

    /// Largest accepted token, bytes.
    pub fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    fn find_key(&self, kid: &str) -> Option<(&Issuer, &Jwk)> {
        self.issuers
            .iter()
            .find_map(|issuer| issuer.jwks.get(kid).map(|key| (issuer, key)))
    }

    /// Verifies a compact JWS service-account token at time `now_unix`.
    ///
    /// Order: size, shape, header (algorithm, `kid`), key, signature; only then
    /// are the claims parsed (no unauthenticated claim JSON is ever parsed),
    /// then required claims and `sub`, issuer, the issuer's namespace scope,
    /// audience, and the times last, so
    /// that a cached verification only has to redo [`Claims::check_times`].
    pub fn verify(&self, token: &[u8], now_unix: u64) -> Result<VerifiedToken, TokenError> {
        self.check(token, now_unix, SignatureCheck::Builtin)
    }

    /// [`verify`](Self::verify) with the signature checked by `backend`
    /// instead of the built-in pure-Rust implementation.
    pub fn verify_with(
        &self,
        token: &[u8],
        now_unix: u64,
        backend: &dyn SignatureBackend,
    ) -> Result<VerifiedToken, TokenError> {
        self.check(token, now_unix, SignatureCheck::Backend(backend))
    }

    /// [`verify`](Self::verify) without the signature, for a token whose
    /// signature a component trusted under the same policy has verified
    /// already (Mazu's handshake validator, in the same proxy, vouching for
    /// it on the connection). Every other check runs, in the same order: the
    /// key must still be one of this policy's and of the header's algorithm.
    pub fn verify_vouched(&self, token: &[u8], now_unix: u64) -> Result<VerifiedToken, TokenError> {
        self.check(token, now_unix, SignatureCheck::Vouched)
    }

    fn check(
        &self,
        token: &[u8],
        now_unix: u64,
        signature_check: SignatureCheck<'_>,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > self.max_token_len {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: self.max_token_len,
            });
        }
        let compact = Compact::split(token)?;
        let header_json = base64url::decode(compact.header)
            .ok_or(TokenError::MalformedBase64(TokenPart::Header))?;
        let header = Header::parse(&header_json)?;
        let (issuer, key) = self.find_key(&header.kid).ok_or(TokenError::UnknownKid)?;
        if key.algorithm() != header.alg {
            return Err(TokenError::KeyTypeMismatch);
        }
        let signature = base64url::decode(compact.signature)
            .ok_or(TokenError::MalformedBase64(TokenPart::Signature))?;
        match signature_check {
            SignatureCheck::Builtin => verify_signature(key, compact.signing_input, &signature)?,
            SignatureCheck::Backend(backend) => {
                if !backend.verify(key, compact.signing_input, &signature) {
                    return Err(TokenError::BadSignature);
                }
            }
            SignatureCheck::Vouched => {}
        }

        let payload_json = base64url::decode(compact.payload)
            .ok_or(TokenError::MalformedBase64(TokenPart::Payload))?;
        let claims = Claims::parse(&payload_json)?;
        if claims.issuer != issuer.url {
            return Err(TokenError::WrongIssuer);
        }
        if !issuer.scope.allows(&claims.kubernetes.namespace) {
            return Err(TokenError::NamespaceOutOfScope);
        }
        claims.check_audience(&self.audience)?;
        claims.check_times(now_unix, self.clock_skew_secs)?;
        Ok(VerifiedToken {
            claims,
            workload_id: WorkloadId::of_token(token),
            claims_digest: ClaimsDigest::of_signing_input(compact.signing_input),
        })
    }
}

/// Checks JWS signatures with an implementation other than the built-in
/// pure-Rust one: a component with native cryptography at hand (the
/// handshake validator uses `ring`) plugs it in with
/// [`TokenPolicy::verify_with`] or
/// [`Verifier::with_signature_backend`](crate::Verifier::with_signature_backend).
/// It must accept exactly what the built-in check accepts.
pub trait SignatureBackend: core::fmt::Debug + Send + Sync {
    /// Whether `signature` over `signing_input` verifies under `key`, with
    /// the key's algorithm ([`Jwk::algorithm`]): RS256 is RSASSA-PKCS1-v1_5
    /// with SHA-256; ES256 is ECDSA P-256 with SHA-256 and a JOSE `r || s`
    /// signature of exactly 64 bytes, high `s` accepted (Kubernetes emits it).
    fn verify(&self, key: &Jwk, signing_input: &[u8], signature: &[u8]) -> bool;
}

/// Who checks the signature in [`TokenPolicy::check`].
#[derive(Clone, Copy)]
enum SignatureCheck<'a> {
    /// The built-in pure-Rust implementation.
    Builtin,
    /// A [`SignatureBackend`].
    Backend(&'a dyn SignatureBackend),
    /// Nobody: a trusted component verified it ([`TokenPolicy::verify_vouched`]).
    Vouched,
}

mod signature_check {
    //! The two signature algorithms. Nothing here is HMAC, by design.

    use p256::ecdsa::signature::Verifier as _;

    use crate::jwks::{Jwk, PublicKey};
    use crate::jwt::TokenError;

    /// Verifies `signature` over `signing_input` with `key`.
    ///
    /// ES256 signatures are JOSE `r || s` (RFC 7518 §3.4), exactly 64 bytes,
    /// not DER. High-`s` values are accepted because Kubernetes (Go's
    /// crypto/ecdsa) emits them; the claims digest covers that malleability.
    pub(super) fn verify_signature(
        key: &Jwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), TokenError> {
        match &key.key {
            PublicKey::Rsa(verifying_key) => {
                let sig = rsa::pkcs1v15::Signature::try_from(signature)
                    .map_err(|_| TokenError::BadSignature)?;
                verifying_key
                    .verify(signing_input, &sig)
                    .map_err(|_| TokenError::BadSignature)
            }
            PublicKey::P256(verifying_key) => {
                if signature.len() != 64 {
                    return Err(TokenError::BadSignature);
                }
                let sig = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| TokenError::BadSignature)?;
                verifying_key
                    .verify(signing_input, &sig)
                    .map_err(|_| TokenError::BadSignature)
            }
        }
    }
}
