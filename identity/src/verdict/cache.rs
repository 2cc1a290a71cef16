//! A verdict function with bounded caches, for the filter.

use alloc::collections::BTreeMap;

use super::{CheckedCertificate, Verdict, decide, recheck};
use crate::digest::{WorkloadId, sha256};
use crate::jwt::{SignatureBackend, TokenError, VerifiedToken};
use crate::registry::RegistryLookup;
use crate::trust::TrustConfig;

/// Default number of entries in each cache (a cached token is about 0.5 KiB,
/// a cached certificate about 1 KiB).
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// [`verdict()`](fn@super::verdict) plus two bounded caches, giving the same verdicts:
///
/// * verified tokens, keyed by SHA-256 of the token bytes: a hit skips the
///   signature and claim checks, which depend only on the token bytes and the
///   (fixed) trust configuration, and re-checks `exp`/`nbf`/`iat` against `now`;
/// * certificates, keyed by SHA-256 of the certificate input (PEM or DER as
///   given): a hit skips parsing too and re-runs only the validity, registry
///   and token-time checks, in the pure function's order.
///
/// Only **allowed** verdicts fill the caches: a token and a certificate are
/// cached only once the whole verdict allowed them. Denials are not cached
/// at all (an attacker varying bytes would defeat a negative cache anyway),
/// so a flood of distinct denied certificates, even ones carrying a valid
/// public token under fresh keys, never displaces an allowed entry: filling
/// a cache takes registrations, which the curator rate-limits and the
/// registry bounds. Entries go when their token (or certificate) expires or,
/// when a cache is full of allowed entries, the one expiring soonest makes
/// room. The registry is never cached: every verdict consults the snapshot
/// given.
#[derive(Clone, Debug)]
pub struct Verifier {
    trust: TrustConfig,
    tokens: BoundedCache<WorkloadId, VerifiedToken>,
    certificates: BoundedCache<[u8; 32], CheckedCertificate>,
    token_verifications: u64,
    vouched_tokens: u64,
    signature_backend: Option<&'static dyn SignatureBackend>,
}

impl Verifier {
    /// A verifier caching up to `capacity` tokens and `capacity` certificates
    /// (0 disables caching).
    pub fn new(trust: TrustConfig, capacity: usize) -> Self {
        Self {
            trust,
            tokens: BoundedCache::new(capacity, |t: &VerifiedToken| t.claims.expires_at),
            certificates: BoundedCache::new(capacity, CheckedCertificate::expires_at),
            token_verifications: 0,
            vouched_tokens: 0,
            signature_backend: None,
        }
    }

    /// This verifier with token signatures checked by `backend` instead of
    /// the built-in pure-Rust implementation (same verdicts, less time).
    pub fn with_signature_backend(mut self, backend: &'static dyn SignatureBackend) -> Self {
        self.signature_backend = Some(backend);
        self
    }

    /// How many tokens this verifier has verified in full, signature
    /// included (verdicts answered from a cache, or refused before the
    /// token, do not count). A metric of the expensive work done.
    pub fn token_verifications(&self) -> u64 {
        self.token_verifications
    }

    /// How many tokens this verifier checked without their signature,
    /// vouched for by the caller ([`verdict_vouched`](Self::verdict_vouched)).
    pub fn vouched_tokens(&self) -> u64 {
        self.vouched_tokens
    }

    /// The configuration verdicts are made under.
    pub fn trust(&self) -> &TrustConfig {
        &self.trust
    }

    /// Number of cached tokens.
    pub fn cached_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Number of cached certificates.
    pub fn cached_certificates(&self) -> usize {
        self.certificates.len()
    }

    /// Whether a verdict on `peer_certificate` (as it would be given to
    /// [`verdict`](Self::verdict)) would start from a cached certificate.
    pub fn is_cached(&self, peer_certificate: &[u8]) -> bool {
        peer_certificate.len() <= self.trust.max_certificate_len()
            && self.certificates.get(&sha256(peer_certificate)).is_some()
    }

    /// Drops cached entries that have expired at `now_unix`.
    pub fn purge_expired(&mut self, now_unix: u64) {
        let skew = self.trust.clock_skew_secs();
        self.tokens.purge(now_unix, skew);
        self.certificates.purge(now_unix, skew);
    }

    /// Same result as [`verdict()`](fn@super::verdict) with this configuration.
    pub fn verdict(
        &mut self,
        peer_certificate: &[u8],
        now_unix: u64,
        registry: &(impl RegistryLookup + ?Sized),
    ) -> Verdict {
        self.verdict_vouched(peer_certificate, now_unix, registry, None)
    }

    /// [`verdict`](Self::verdict), except that the token whose ID is
    /// `signature_vouched` (if it is the certificate's) is checked without
    /// its signature ([`TokenPolicy::verify_vouched`]): the caller knows a
    /// component trusted under this same configuration verified it. Every
    /// other check runs; an allowed token is cached as if verified here.
    ///
    /// [`TokenPolicy::verify_vouched`]: crate::jwt::TokenPolicy::verify_vouched
    pub fn verdict_vouched(
        &mut self,
        peer_certificate: &[u8],
        now_unix: u64,
        registry: &(impl RegistryLookup + ?Sized),
        signature_vouched: Option<WorkloadId>,
    ) -> Verdict {
        let Self {
            trust,
            tokens,
            certificates,
            token_verifications,
            vouched_tokens,
            signature_backend,
        } = self;
        let skew = trust.clock_skew_secs();
        // Oversized input is refused by the pure path without hashing it.
        let key = (peer_certificate.len() <= trust.max_certificate_len())
            .then(|| sha256(peer_certificate));
        if let Some(checked) = key.and_then(|key| certificates.get(&key)) {
            return recheck(checked, now_unix, trust, registry);
        }
        let mut newly_verified = None;
        let (verdict, allowed) =
            decide(peer_certificate, now_unix, trust, registry, |token, id| {
                if let Some(cached) = tokens.get(&id) {
                    return match cached.claims.check_times(now_unix, skew) {
                        Ok(()) => Ok(cached.clone()),
                        Err(err) => {
                            if err == TokenError::Expired {
                                tokens.remove(&id);
                            }
                            Err(err)
                        }
                    };
                }
                let verified = if signature_vouched == Some(id) {
                    *vouched_tokens = vouched_tokens.saturating_add(1);
                    trust.verify_vouched_token(token, now_unix)?
                } else {
                    *token_verifications = token_verifications.saturating_add(1);
                    match signature_backend {
                        Some(backend) => trust.verify_token_with(token, now_unix, *backend)?,
                        None => trust.verify_token(token, now_unix)?,
                    }
                };
                newly_verified = Some(verified.clone());
                Ok(verified)
            });
        // Only an allowed verdict is cached.
        if let Some(checked) = allowed {
            if let Some(verified) = newly_verified {
                tokens.insert(verified.workload_id, verified, now_unix, skew);
            }
            if let Some(key) = key {
                certificates.insert(key, checked, now_unix, skew);
            }
        }
        verdict
    }
}

/// A map with a size bound; entries carry an expiry (Unix seconds).
#[derive(Clone)]
struct BoundedCache<K, V> {
    capacity: usize,
    expiry: fn(&V) -> u64,
    map: BTreeMap<K, V>,
}

impl<K, V> core::fmt::Debug for BoundedCache<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BoundedCache")
            .field("capacity", &self.capacity)
            .field("len", &self.map.len())
            .finish()
    }
}

impl<K: Ord + Copy, V> BoundedCache<K, V> {
    fn new(capacity: usize, expiry: fn(&V) -> u64) -> Self {
        Self {
            capacity,
            expiry,
            map: BTreeMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    fn purge(&mut self, now_unix: u64, skew: u64) {
        let expiry = self.expiry;
        self.map
            .retain(|_, value| now_unix < expiry(value).saturating_add(skew));
    }

    /// Inserts, first dropping expired entries and then the soonest-expiring
    /// ones if the cache is full. O(n) only when full.
    fn insert(&mut self, key: K, value: V, now_unix: u64, skew: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.purge(now_unix, skew);
            let expiry = self.expiry;
            while self.map.len() >= self.capacity {
                let Some(victim) = self
                    .map
                    .iter()
                    .min_by_key(|(_, v)| expiry(v))
                    .map(|(k, _)| *k)
                else {
                    break;
                };
                self.map.remove(&victim);
            }
        }
        self.map.insert(key, value);
    }
}
