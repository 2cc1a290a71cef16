//! The connection verdict: may this peer certificate talk to us?
//!
//! [`verdict()`](fn@crate::verdict) is a pure function of the certificate, the time, the trust
//! configuration and the registry snapshot. [`Verifier`] adds bounded caches
//! (tokens and certificates of allowed peers) so that the second sight of a
//! token skips the signature check and the second sight of a certificate
//! skips parsing, and returns the same verdicts. Denials are never cached, so
//! no flood of denied certificates can evict an allowed peer.

mod cache;
mod deny;

pub use cache::{DEFAULT_CACHE_CAPACITY, Verifier};
pub use deny::DenyReason;

use crate::certificate::{PeerCertificate, check_validity_window};
use crate::digest::{ClaimsDigest, SpkiHash, WorkloadId};
use crate::jwt::{TokenError, VerifiedToken};
use crate::registry::{RegistryEntry, RegistryLookup};
use crate::spiffe::SpiffeId;
use crate::trust::TrustConfig;

/// Who the peer is, once every check passed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The peer's SPIFFE ID (certificate URI SAN, matching the token).
    pub spiffe_id: SpiffeId,
    /// SHA-256 of its token.
    pub workload_id: WorkloadId,
    /// SHA-256 of its certificate's `SubjectPublicKeyInfo` (the key the
    /// registration binds).
    pub spki_hash: SpkiHash,
    /// SHA-256 of the token's signing input (see [`ClaimsDigest`]).
    pub claims_digest: ClaimsDigest,
    /// Its registry slot.
    pub slot: u32,
    /// Its token's `exp`, Unix seconds.
    pub token_expiry: u64,
    /// Its certificate's `notAfter`, Unix seconds.
    pub certificate_not_after: u64,
    /// When this verdict stops holding at the latest: the earlier of the
    /// token's expiry and the certificate's `notAfter` (before skew). A
    /// per-certificate verdict cache must also drop it when the registry
    /// changes (a revocation).
    pub valid_until: u64,
}

/// The outcome for one peer certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Allow(PeerIdentity),
    /// The first check that failed.
    Deny(DenyReason),
}

impl Verdict {
    /// Whether the peer is allowed.
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The deny reason, if denied.
    pub fn deny_reason(&self) -> Option<&DenyReason> {
        match self {
            Self::Allow(_) => None,
            Self::Deny(reason) => Some(reason),
        }
    }

    /// `"allow"` or the deny reason's stable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow(_) => "allow",
            Self::Deny(reason) => reason.as_str(),
        }
    }
}

/// Decides whether a peer may connect.
///
/// `peer_certificate` is the peer's leaf certificate as PEM (Envoy's
/// `connection.peer_certificate`) or DER. The TLS handshake must already have
/// proved that the peer holds the certificate's private key. Allowed only if,
/// in this order (the first failure is the reason):
///
/// 1. the certificate parses within limits and is within its validity;
/// 2. SHA-256 of the embedded token equals the workload ID in the extension;
/// 3. the workload ID is registered, not revoked, and the registered key hash
///    equals this certificate's SPKI hash;
/// 4. the token verifies (signature by a configured issuer key, issuer and
///    its namespace scope, audience, times, claims);
/// 5. the certificate does not outlive the token;
/// 6. the URI SAN equals the SPIFFE ID the token's claims and the trust domain give;
/// 7. the registration has not expired.
///
/// Steps 1-3 cost a parse, two SHA-256 and a binary search: a certificate
/// whose key is not the one registered for its token is refused before any
/// RSA or ECDSA signature verification, so a flood of attacker certificates
/// costs hashes, not public-key operations.
pub fn verdict(
    peer_certificate: &[u8],
    now_unix: u64,
    trust: &TrustConfig,
    registry: &(impl RegistryLookup + ?Sized),
) -> Verdict {
    decide(peer_certificate, now_unix, trust, registry, |token, _id| {
        trust.verify_token(token, now_unix)
    })
    .0
}

/// What the checks established about one allowed certificate: enough to
/// redo only the time and registry checks later.
#[derive(Clone, Debug)]
pub(crate) struct CheckedCertificate {
    pub(crate) spiffe_id: SpiffeId,
    pub(crate) spki_hash: SpkiHash,
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
    pub(crate) token: VerifiedToken,
}

impl CheckedCertificate {
    /// When the cached checks stop mattering: the certificate or token is over.
    pub(crate) fn expires_at(&self) -> u64 {
        self.not_after.min(self.token.claims.expires_at)
    }
}

/// The checks, with token verification supplied by the caller (direct, or
/// through the cache). `verify_token` gets the token and its workload ID.
/// Besides the verdict, returns what the checks established about the
/// certificate when it was allowed (the cache keeps only those).
pub(crate) fn decide(
    peer_certificate: &[u8],
    now_unix: u64,
    trust: &TrustConfig,
    registry: &(impl RegistryLookup + ?Sized),
    verify_token: impl FnOnce(&[u8], WorkloadId) -> Result<VerifiedToken, TokenError>,
) -> (Verdict, Option<CheckedCertificate>) {
    match checks(peer_certificate, now_unix, trust, registry, verify_token) {
        Ok((identity, checked)) => (Verdict::Allow(identity), Some(checked)),
        Err(reason) => (Verdict::Deny(reason), None),
    }
}

/// Steps 1-7, in order.
fn checks(
    peer_certificate: &[u8],
    now_unix: u64,
    trust: &TrustConfig,
    registry: &(impl RegistryLookup + ?Sized),
    verify_token: impl FnOnce(&[u8], WorkloadId) -> Result<VerifiedToken, TokenError>,
) -> Result<(PeerIdentity, CheckedCertificate), DenyReason> {
    let skew = trust.clock_skew_secs();
    // 1. Parse and validity.
    let cert = PeerCertificate::parse(peer_certificate, trust.max_certificate_len())?;
    cert.check_validity(now_unix, skew)?;

    // 2. The ID is the token's hash.
    let workload_id = WorkloadId::of_token(&cert.token);
    if workload_id != cert.workload_id {
        return Err(DenyReason::WorkloadIdMismatch);
    }

    // 3. The ID is bound to this certificate's key: before any signature.
    binding_checks(&workload_id, &cert.spki_hash, registry)?;

    // 4-6. The token, its lifetime against the certificate's, the SPIFFE ID.
    let token = verify_token(&cert.token, workload_id)?;
    let claims = &token.claims;
    if cert.not_after > claims.expires_at.saturating_add(skew) {
        return Err(DenyReason::CertificateOutlivesToken);
    }
    let expected = SpiffeId::new(
        trust.trust_domain(),
        &claims.kubernetes.namespace,
        &claims.kubernetes.service_account.name,
    )
    .map_err(DenyReason::InvalidTokenIdentity)?;
    if expected != cert.spiffe_id {
        return Err(DenyReason::SpiffeIdMismatch);
    }
    let checked = CheckedCertificate {
        spiffe_id: cert.spiffe_id,
        spki_hash: cert.spki_hash,
        not_before: cert.not_before,
        not_after: cert.not_after,
        token,
    };

    // 7. The registration's own expiry.
    let identity = registration_checks(&checked, now_unix, trust, registry)?;
    Ok((identity, checked))
}

/// For a certificate allowed earlier: the time and registry checks, in the
/// order of [`decide`] (certificate validity, binding, token times,
/// registration expiry). Gives the same result as [`decide`] on the same
/// certificate, since every other check depends only on the certificate
/// bytes and the fixed configuration.
pub(crate) fn recheck(
    checked: &CheckedCertificate,
    now_unix: u64,
    trust: &TrustConfig,
    registry: &(impl RegistryLookup + ?Sized),
) -> Verdict {
    let skew = trust.clock_skew_secs();
    let result = check_validity_window(checked.not_before, checked.not_after, now_unix, skew)
        .map_err(DenyReason::Certificate)
        .and_then(|()| binding_checks(&checked.token.workload_id, &checked.spki_hash, registry))
        .and_then(|()| {
            checked
                .token
                .claims
                .check_times(now_unix, skew)
                .map_err(DenyReason::Token)
        })
        .and_then(|()| registration_checks(checked, now_unix, trust, registry));
    into_verdict(result)
}

/// Steps 3 and 7 alone, for a certificate whose other checks a trusted
/// component made (the filter taking the handshake validator's verdict):
/// `workload_id` is registered, not revoked, bound to `spki_hash`, and its
/// registration has not expired at `now_unix`. Returns its entry.
pub fn check_registration(
    workload_id: &WorkloadId,
    spki_hash: &SpkiHash,
    now_unix: u64,
    trust: &TrustConfig,
    registry: &(impl RegistryLookup + ?Sized),
) -> Result<RegistryEntry, DenyReason> {
    binding_checks(workload_id, spki_hash, registry)?;
    let entry = registry
        .entry(workload_id)
        .ok_or(DenyReason::NotRegistered)?;
    registration_unexpired(&entry, now_unix, trust)?;
    Ok(entry)
}

/// Step 3: registered, not revoked, same key. Only a lookup and a
/// comparison: this runs before any signature verification.
fn binding_checks(
    workload_id: &WorkloadId,
    spki_hash: &SpkiHash,
    registry: &(impl RegistryLookup + ?Sized),
) -> Result<(), DenyReason> {
    let entry = registry
        .entry(workload_id)
        .ok_or(DenyReason::NotRegistered)?;
    if entry.revoked {
        return Err(DenyReason::Revoked);
    }
    if !entry.spki_hash.ct_eq(spki_hash) {
        return Err(DenyReason::KeyMismatch);
    }
    Ok(())
}

/// Step 7: the registered expiry has not passed; the identity.
fn registration_checks(
    checked: &CheckedCertificate,
    now_unix: u64,
    trust: &TrustConfig,
    registry: &(impl RegistryLookup + ?Sized),
) -> Result<PeerIdentity, DenyReason> {
    let workload_id = checked.token.workload_id;
    let entry = registry
        .entry(&workload_id)
        .ok_or(DenyReason::NotRegistered)?;
    registration_unexpired(&entry, now_unix, trust)?;
    let token_expiry = checked.token.claims.expires_at;
    Ok(PeerIdentity {
        spiffe_id: checked.spiffe_id.clone(),
        workload_id,
        spki_hash: checked.spki_hash,
        claims_digest: checked.token.claims_digest,
        slot: entry.slot,
        token_expiry,
        certificate_not_after: checked.not_after,
        valid_until: token_expiry.min(checked.not_after),
    })
}

/// Step 7's test: the registered expiry (plus skew) is still ahead.
fn registration_unexpired(
    entry: &RegistryEntry,
    now_unix: u64,
    trust: &TrustConfig,
) -> Result<(), DenyReason> {
    if now_unix >= entry.token_expiry.saturating_add(trust.clock_skew_secs()) {
        return Err(DenyReason::RegistrationExpired);
    }
    Ok(())
}

fn into_verdict(result: Result<PeerIdentity, DenyReason>) -> Verdict {
    match result {
        Ok(identity) => Verdict::Allow(identity),
        Err(reason) => Verdict::Deny(reason),
    }
}
