//! The per-VM decision state: the registry held, the verdict cache and the
//! connection decision. Pure: the proxy-wasm glue feeds it properties and the
//! time and carries out what it decides.
//!
//! # The hot path
//!
//! A connection is decided from, in order:
//! 1. `mtls` (must be true: Envoy lets a client without a certificate through
//!    a validation context that has no trusted CA);
//! 2. whether a registry exists and is fresh enough (else `deny`/`park`);
//! 3. the verdict caches, keyed by Envoy's `sha256_peer_certificate_digest`:
//!    a cached allow is re-checked against the current registry entry (one
//!    lookup: a binary search, in shared data a piece read and hashed)
//!    whenever the registry version moved since it was
//!    cached, so a revocation applies to the very next connection; a cached
//!    deny holds only for the registry version it was made under and at most
//!    [`DENY_TTL_SECS`]. Allows and denials live in two separate bounded
//!    caches (denials in one [`DENY_CACHE_DIVISOR`] times smaller), so that a
//!    flood of distinct denied certificates, which anyone can make, only
//!    ever evicts other denials and never an allowed peer;
//! 4. on a miss, the full [`Verifier::verdict`] on the PEM certificate.

use alloc::string::{String, ToString};

use mazu_identity::{
    PeerCertificate, PeerIdentity, RegistryEntry, RegistryLookup, Verdict, Verifier, WorkloadId,
};
use sha2::{Digest, Sha256};

use crate::cache::{CertDigest, VerdictCache};
use crate::config::{BeforeRegistry, FilterConfig, WhenStale};
use crate::vouch::{self, Vouch, VouchedVerdict};

mod held;

pub use held::HeldRegistry;
use held::VerdictLookup;

/// How long a cached denial holds at most, seconds (it also ends when the
/// registry changes). Short, so that a certificate that was not yet valid, or
/// a workload that registers a moment later, is not held off for long.
pub const DENY_TTL_SECS: u64 = 10;

/// The denial cache holds `verdict_cache_entries / DENY_CACHE_DIVISOR`
/// entries (at least one): denials are cheap to redo (the verdict refuses an
/// unregistered key before any signature check) and only damp repeats.
pub const DENY_CACHE_DIVISOR: usize = 8;

/// Reasons the filter itself denies for, beside the verdict's own
/// ([`mazu_identity::DenyReason::as_str`]).
pub mod reason {
    /// `connection.mtls` is false or missing: the peer sent no certificate.
    pub const NO_CLIENT_CERTIFICATE: &str = "no_client_certificate";
    /// `mtls` is true but the peer certificate property is missing.
    pub const NO_PEER_CERTIFICATE: &str = "no_peer_certificate";
    /// No registry fetched yet and `before_registry` is `deny`.
    pub const REGISTRY_UNAVAILABLE: &str = "registry_unavailable";
    /// The registry is older than `max_staleness_secs` and `when_stale` is `deny`.
    pub const REGISTRY_STALE: &str = "registry_stale";
    /// Parked until `park_timeout_ms` without a registry arriving.
    pub const PARK_TIMEOUT: &str = "park_timeout";
    /// Parking was needed but `max_parked` connections already wait.
    pub const PARK_OVERFLOW: &str = "park_overflow";
    /// The registry is read from shared data and the piece that would
    /// answer was overwritten since it was verified (and no newer verified
    /// registry was there to install).
    pub const REGISTRY_UNREADABLE: &str = "registry_unreadable";

    /// Every filter-level reason.
    pub const ALL: [&str; 7] = [
        NO_CLIENT_CERTIFICATE,
        NO_PEER_CERTIFICATE,
        REGISTRY_UNAVAILABLE,
        REGISTRY_STALE,
        PARK_TIMEOUT,
        PARK_OVERFLOW,
        REGISTRY_UNREADABLE,
    ];
}

/// What to do with a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allow {
        /// The peer's SPIFFE ID.
        peer: String,
        /// Decided from the cache.
        cached: bool,
    },
    /// Close it.
    Deny {
        /// Stable reason name (metrics label).
        reason: &'static str,
        /// The peer's SPIFFE ID if the certificate could be parsed that far.
        peer: Option<String>,
        /// Decided from the cache.
        cached: bool,
    },
    /// Hold it until the registry arrives (inbound, `before_registry: park`).
    Park,
}

impl Decision {
    /// Whether the full verdict ran: not answered by the cache, and not one
    /// of the filter's own refusals (which never reach the verdict).
    pub fn ran_full_verdict(&self) -> bool {
        match self {
            Decision::Allow { cached, .. } => !cached,
            Decision::Deny { reason, cached, .. } => !cached && !reason::ALL.contains(reason),
            Decision::Park => false,
        }
    }

    fn deny(reason: &'static str) -> Decision {
        Decision::Deny {
            reason,
            peer: None,
            cached: false,
        }
    }
}

/// What the peer presented, as read from Envoy's properties. Each field is
/// `None` when the property was absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerFacts<'a> {
    /// `connection.mtls` inbound; outbound, whether the server's certificate
    /// digest is present (Envoy has no `upstream.mtls`).
    pub mtls: Option<bool>,
    /// `sha256_peer_certificate_digest`: hex SHA-256 of the DER certificate.
    pub digest_hex: Option<&'a [u8]>,
}

/// State of the registry as far as a decision is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryState {
    /// Never fetched.
    Missing,
    /// Held and within `max_staleness_secs`.
    Fresh,
    /// Held but not confirmed by the curator for longer than `max_staleness_secs`.
    Stale,
}

/// A cached allow.
#[derive(Clone, Debug)]
struct CachedAllow {
    peer: String,
    /// The registry entry the allow was made against; any other entry
    /// (revoked, or a different binding) sends the next lookup to a full verdict.
    entry: RegistryEntry,
    registry_version: u64,
}

/// A cached denial.
#[derive(Clone, Debug)]
struct CachedDeny {
    reason: &'static str,
    peer: Option<String>,
    registry_version: u64,
}

/// The decision state of one VM.
#[derive(Debug)]
pub struct Engine {
    config: FilterConfig,
    verifier: Verifier,
    registry: Option<HeldRegistry>,
    confirmed_ms: u64,
    /// Allowed peers only: nothing a denied certificate does evicts them.
    allowed: VerdictCache<CachedAllow>,
    /// Denials, in their own smaller cache.
    denied: VerdictCache<CachedDeny>,
    /// Verdicts taken from the handshake validator (`crate::vouch`).
    vouched_verdicts: u64,
}

impl Engine {
    /// A fresh engine for `config`, without a registry.
    pub fn new(config: FilterConfig) -> Self {
        let verifier = Verifier::new(config.trust.clone(), config.verdict_cache_entries);
        let allowed = VerdictCache::new(config.verdict_cache_entries);
        let denied = VerdictCache::new(config.verdict_cache_entries / DENY_CACHE_DIVISOR);
        Engine {
            config,
            verifier,
            registry: None,
            confirmed_ms: 0,
            allowed,
            denied,
            vouched_verdicts: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The registry held, if any.
    pub fn registry(&self) -> Option<&HeldRegistry> {
        self.registry.as_ref()
    }

    /// The version of the registry held.
    pub fn registry_version(&self) -> Option<u64> {
        self.registry.as_ref().map(HeldRegistry::version)
    }

    /// When the curator last confirmed the registry, milliseconds since the epoch.
    pub fn confirmed_ms(&self) -> u64 {
        self.confirmed_ms
    }

    /// Installs `registry` if it is newer than the one held (or none is
    /// held) and records the confirmation time. Returns whether it was installed.
    pub fn install(&mut self, registry: impl Into<HeldRegistry>, confirmed_ms: u64) -> bool {
        let registry = registry.into();
        self.confirm(confirmed_ms);
        if self
            .registry_version()
            .is_some_and(|held| held >= registry.version())
        {
            return false;
        }
        self.registry = Some(registry);
        true
    }

    /// Records that the curator confirmed the registry at `confirmed_ms`.
    pub fn confirm(&mut self, confirmed_ms: u64) {
        self.confirmed_ms = self.confirmed_ms.max(confirmed_ms);
    }

    /// Age of the registry since the curator last confirmed it, seconds.
    pub fn registry_age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.confirmed_ms) / 1000
    }

    /// Whether a registry is held and fresh.
    pub fn registry_state(&self, now_ms: u64) -> RegistryState {
        if self.registry.is_none() {
            RegistryState::Missing
        } else if self.registry_age_secs(now_ms) > self.config.max_staleness_secs {
            RegistryState::Stale
        } else {
            RegistryState::Fresh
        }
    }

    /// Decides a connection. `read_certificate` is called only when the
    /// cache cannot answer; it returns the PEM (or DER) peer certificate.
    pub fn decide(
        &mut self,
        now_ms: u64,
        facts: PeerFacts<'_>,
        read_certificate: impl FnOnce() -> Option<alloc::vec::Vec<u8>>,
    ) -> Decision {
        self.decide_vouched(now_ms, facts, read_certificate, || None)
    }

    /// [`decide`](Self::decide), where `read_vouch`, called only when the
    /// cache cannot answer (and before `read_certificate`), gives the
    /// handshake validator's word (the connection's
    /// [`vouch::FILTER_STATE_KEY`]), honoured only if made under this
    /// configuration's trust object: its verdict on this very certificate
    /// is taken once this VM's own registry agrees with it, without reading
    /// the certificate; otherwise the whole verdict runs, with the token's
    /// signature taken as verified.
    pub fn decide_vouched(
        &mut self,
        now_ms: u64,
        facts: PeerFacts<'_>,
        read_certificate: impl FnOnce() -> Option<alloc::vec::Vec<u8>>,
        read_vouch: impl FnOnce() -> Option<alloc::vec::Vec<u8>>,
    ) -> Decision {
        if facts.mtls != Some(true) {
            return Decision::deny(reason::NO_CLIENT_CERTIFICATE);
        }
        match self.registry_state(now_ms) {
            RegistryState::Missing => {
                return match self.config.before_registry {
                    BeforeRegistry::Deny => Decision::deny(reason::REGISTRY_UNAVAILABLE),
                    BeforeRegistry::Park { .. } => Decision::Park,
                };
            }
            RegistryState::Stale if self.config.when_stale == WhenStale::Deny => {
                return Decision::deny(reason::REGISTRY_STALE);
            }
            RegistryState::Stale | RegistryState::Fresh => {}
        }
        let now_unix = now_ms / 1000;
        let envoy_digest = facts.digest_hex.and_then(parse_hex_digest);
        if let Some(digest) = &envoy_digest
            && let Some(decision) = self.lookup(digest, now_unix)
        {
            return decision;
        }
        let vouch = read_vouch().and_then(|value| vouch::parse(&value, &self.config.trust_digest));
        if let (Some(Vouch::Verdict(verdict)), Some(digest)) = (&vouch, envoy_digest)
            && let Some(decision) = self.decide_vouched_verdict(digest, verdict, now_unix)
        {
            return decision;
        }
        let Some(certificate) = read_certificate() else {
            return Decision::deny(reason::NO_PEER_CERTIFICATE);
        };
        let digest = envoy_digest.unwrap_or_else(|| fallback_digest(&certificate));
        let signature_vouched = vouch.as_ref().map(Vouch::workload_id);
        self.decide_certificate(digest, &certificate, now_unix, signature_vouched)
    }

    /// The validator's verdict on the certificate whose digest Envoy
    /// reports as `digest`, taken only if it is about that certificate and
    /// this VM's own registry agrees: the id is registered, not revoked,
    /// bound to the vouched key, its registration unexpired, and the
    /// verdict still holds. `None` (the whole verdict runs here) otherwise,
    /// so every refusal keeps its own reason.
    fn decide_vouched_verdict(
        &mut self,
        digest: CertDigest,
        verdict: &VouchedVerdict,
        now_unix: u64,
    ) -> Option<Decision> {
        if verdict.certificate_digest != digest || now_unix > verdict.valid_until {
            return None;
        }
        let registry = self.registry.as_ref()?;
        // An unreadable piece reads as unregistered here; the whole verdict
        // then meets it again and says so.
        let entry = mazu_identity::check_registration(
            &verdict.workload_id,
            &verdict.spki_hash,
            now_unix,
            &self.config.trust,
            &VerdictLookup::new(registry),
        )
        .ok()?;
        let peer = verdict.spiffe_id.as_str().to_string();
        self.denied.remove(&digest);
        self.allowed.insert(
            digest,
            CachedAllow {
                peer: peer.clone(),
                entry,
                registry_version: registry.version(),
            },
            verdict.valid_until,
            now_unix,
        );
        self.vouched_verdicts = self.vouched_verdicts.saturating_add(1);
        Some(Decision::Allow {
            peer,
            cached: false,
        })
    }

    /// Decides a parked connection from its certificate, once a registry
    /// exists (or denies it if it still does not, or is stale under `deny`).
    pub fn decide_parked(
        &mut self,
        now_ms: u64,
        certificate: &[u8],
        digest: Option<CertDigest>,
    ) -> Decision {
        match self.registry_state(now_ms) {
            RegistryState::Missing => return Decision::deny(reason::REGISTRY_UNAVAILABLE),
            RegistryState::Stale if self.config.when_stale == WhenStale::Deny => {
                return Decision::deny(reason::REGISTRY_STALE);
            }
            RegistryState::Stale | RegistryState::Fresh => {}
        }
        let now_unix = now_ms / 1000;
        let digest = digest.unwrap_or_else(|| fallback_digest(certificate));
        if let Some(decision) = self.lookup(&digest, now_unix) {
            return decision;
        }
        self.decide_certificate(digest, certificate, now_unix, None)
    }

    /// A cached decision for `digest`, re-validated against the current registry.
    fn lookup(&mut self, digest: &CertDigest, now_unix: u64) -> Option<Decision> {
        let registry = self.registry.as_ref()?;
        let version = registry.version();
        let skew = self.config.trust.clock_skew_secs();
        if let Some(cached) = self.allowed.get_mut(digest, now_unix) {
            if cached.registry_version != version {
                // Same binding, still not revoked, registration not expired.
                let entry = &cached.entry;
                let Ok(current) = registry.get(&entry.workload_id) else {
                    // Kept: it is re-checked once a registry can answer.
                    return Some(Decision::deny(reason::REGISTRY_UNREADABLE));
                };
                let still_valid = current.as_ref() == Some(entry)
                    && now_unix < entry.token_expiry.saturating_add(skew);
                if !still_valid {
                    self.allowed.remove(digest);
                    return None;
                }
                cached.registry_version = version;
            }
            return Some(Decision::Allow {
                peer: cached.peer.clone(),
                cached: true,
            });
        }
        let cached = self.denied.get_mut(digest, now_unix)?;
        if cached.registry_version != version {
            self.denied.remove(digest);
            return None;
        }
        Some(Decision::Deny {
            reason: cached.reason,
            peer: cached.peer.clone(),
            cached: true,
        })
    }

    fn decide_certificate(
        &mut self,
        digest: CertDigest,
        certificate: &[u8],
        now_unix: u64,
        signature_vouched: Option<WorkloadId>,
    ) -> Decision {
        let Some(registry) = self.registry.as_ref() else {
            return Decision::deny(reason::REGISTRY_UNAVAILABLE);
        };
        let version = registry.version();
        let lookup = VerdictLookup::new(registry);
        let verdict =
            self.verifier
                .verdict_vouched(certificate, now_unix, &lookup, signature_vouched);
        if lookup.was_unreadable() {
            // Decided without the registry's answer: neither used nor cached.
            return Decision::deny(reason::REGISTRY_UNREADABLE);
        }
        match verdict {
            Verdict::Allow(identity) => {
                let Some(entry) = lookup.entry(&identity.workload_id) else {
                    // The verdict just found it; cannot happen. Do not cache.
                    return allow(&identity, false);
                };
                let decision = allow(&identity, false);
                self.denied.remove(&digest);
                self.allowed.insert(
                    digest,
                    CachedAllow {
                        peer: identity.spiffe_id.as_str().to_string(),
                        entry,
                        registry_version: version,
                    },
                    identity.valid_until,
                    now_unix,
                );
                decision
            }
            Verdict::Deny(deny) => {
                let reason = deny.as_str();
                let peer = peer_spiffe_id(certificate, self.config.trust.max_certificate_len());
                self.denied.insert(
                    digest,
                    CachedDeny {
                        reason,
                        peer: peer.clone(),
                        registry_version: version,
                    },
                    now_unix.saturating_add(DENY_TTL_SECS),
                    now_unix,
                );
                Decision::Deny {
                    reason,
                    peer,
                    cached: false,
                }
            }
        }
    }

    /// Token signatures this VM verified itself, and tokens it took as
    /// verified on the handshake validator's word (`crate::vouch`).
    pub fn token_signatures(&self) -> (u64, u64) {
        (
            self.verifier.token_verifications(),
            self.verifier.vouched_tokens(),
        )
    }

    /// Connections allowed on the handshake validator's verdict
    /// (`crate::vouch`), after this VM's own registry agreed.
    pub fn vouched_verdicts(&self) -> u64 {
        self.vouched_verdicts
    }

    /// Number of cached verdicts (allows and denials).
    pub fn cached_verdicts(&self) -> usize {
        self.allowed.len() + self.denied.len()
    }

    /// Number of cached allows.
    pub fn cached_allows(&self) -> usize {
        self.allowed.len()
    }
}

fn allow(identity: &PeerIdentity, cached: bool) -> Decision {
    Decision::Allow {
        peer: identity.spiffe_id.as_str().to_string(),
        cached,
    }
}

/// The SPIFFE ID of a certificate that was denied, for the log line, if it
/// parses that far.
fn peer_spiffe_id(certificate: &[u8], max_len: usize) -> Option<String> {
    PeerCertificate::parse(certificate, max_len)
        .ok()
        .map(|cert| cert.spiffe_id.as_str().to_string())
}

/// Parses 64 hex digits (Envoy's `sha256_peer_certificate_digest`).
pub fn parse_hex_digest(hex: &[u8]) -> Option<CertDigest> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Cache key when Envoy did not provide the digest: SHA-256 over the
/// certificate as given, domain-separated from DER digests. Only used for
/// lookups within one VM, so it need not equal the DER digest.
pub fn fallback_digest(certificate: &[u8]) -> CertDigest {
    let mut hasher = Sha256::new();
    hasher.update(b"mazu-filter certificate as given\0");
    hasher.update(certificate);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests;
