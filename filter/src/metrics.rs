//! Metric names. Every name starts with `mazu.<direction>.`; Envoy shows
//! them in its admin `/stats` with its `wasmcustom.` prefix, e.g.
//! `wasmcustom.mazu.inbound.connections_allowed`.

use alloc::string::String;

use crate::config::Direction;

/// A counter or gauge the filter defines up front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fixed {
    /// Connections let through.
    ConnectionsAllowed,
    /// Connections closed (sum of every `denied.<reason>`).
    ConnectionsDenied,
    /// Decisions answered by the verdict cache.
    VerdictCacheHits,
    /// Decisions that ran the full verdict.
    VerdictCacheMisses,
    /// Connections parked while no registry existed.
    ConnectionsParked,
    /// Callouts sent to the curator (checkpoints and pages of records).
    RegistryFetches,
    /// Rounds that installed a newer registry derived from the log.
    RegistryUpdates,
    /// Rounds whose checkpoint was the one followed (same size and root):
    /// the registry is confirmed as of its witnessed time.
    RegistryUnchanged,
    /// Rounds that failed or were refused (sum of every
    /// `registry_fetch_failures.<kind>`).
    RegistryFetchFailures,
    /// Gauge: the registry version this VM decides with.
    RegistryVersion,
    /// Gauge: entries in that registry.
    RegistryEntries,
    /// Gauge: seconds since the witnessed time of the newest checkpoint
    /// that confirmed it.
    RegistryAgeSeconds,
    /// Gauge: connections parked right now in this VM.
    ParkedNow,
    /// Outbound connections whose server this filter cannot see (no
    /// `tcp_proxy` upstream on the connection: an HTTP connection manager
    /// chain), left to the handshake (docs/filter.md, "HTTP chains").
    OutboundNotSeen,
    /// Registries installed from shared data after verifying them (another
    /// VM of this Envoy fetched them).
    SharedInstalls,
    /// Shared-data entries refused: they did not verify under this VM's
    /// configuration.
    SharedRefused,
    /// Token signatures this filter verified itself (in V8).
    TokenSignaturesVerified,
    /// Tokens taken as signed on the handshake validator's word, which
    /// verified them under the same trust object (`crate::vouch`).
    TokenSignaturesVouched,
    /// Connections allowed on the handshake validator's verdict, once this
    /// VM's own registry agreed with it (`crate::vouch`): no certificate or
    /// token was parsed here.
    VerdictsVouched,
    /// Microseconds spent on decisions the verdict cache did not answer
    /// (from reading the validator's word or the certificate: every check),
    /// by the host's clock: divided by `verdict_cache_misses`, the mean cold
    /// verdict inside this proxy.
    UncachedVerdictMicros,
}

impl Fixed {
    /// Every fixed metric.
    pub const ALL: [Fixed; 20] = [
        Fixed::ConnectionsAllowed,
        Fixed::ConnectionsDenied,
        Fixed::VerdictCacheHits,
        Fixed::VerdictCacheMisses,
        Fixed::ConnectionsParked,
        Fixed::RegistryFetches,
        Fixed::RegistryUpdates,
        Fixed::RegistryUnchanged,
        Fixed::RegistryFetchFailures,
        Fixed::RegistryVersion,
        Fixed::RegistryEntries,
        Fixed::RegistryAgeSeconds,
        Fixed::ParkedNow,
        Fixed::OutboundNotSeen,
        Fixed::SharedInstalls,
        Fixed::SharedRefused,
        Fixed::TokenSignaturesVerified,
        Fixed::TokenSignaturesVouched,
        Fixed::VerdictsVouched,
        Fixed::UncachedVerdictMicros,
    ];

    /// The name after `mazu.<direction>.`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Fixed::ConnectionsAllowed => "connections_allowed",
            Fixed::ConnectionsDenied => "connections_denied",
            Fixed::VerdictCacheHits => "verdict_cache_hits",
            Fixed::VerdictCacheMisses => "verdict_cache_misses",
            Fixed::ConnectionsParked => "connections_parked",
            Fixed::RegistryFetches => "registry_fetches",
            Fixed::RegistryUpdates => "registry_updates",
            Fixed::RegistryUnchanged => "registry_unchanged",
            Fixed::RegistryFetchFailures => "registry_fetch_failures",
            Fixed::RegistryVersion => "registry_version",
            Fixed::RegistryEntries => "registry_entries",
            Fixed::RegistryAgeSeconds => "registry_age_seconds",
            Fixed::ParkedNow => "parked_connections",
            Fixed::OutboundNotSeen => "outbound_not_seen",
            Fixed::SharedInstalls => "shared_installs",
            Fixed::SharedRefused => "shared_refused",
            Fixed::TokenSignaturesVerified => "token_signatures_verified",
            Fixed::TokenSignaturesVouched => "token_signatures_vouched",
            Fixed::VerdictsVouched => "verdicts_vouched",
            Fixed::UncachedVerdictMicros => "uncached_verdict_micros",
        }
    }

    /// Whether it is a gauge (else a counter).
    pub const fn is_gauge(self) -> bool {
        matches!(
            self,
            Fixed::RegistryVersion
                | Fixed::RegistryEntries
                | Fixed::RegistryAgeSeconds
                | Fixed::ParkedNow
        )
    }

    /// Index into a table of metric ids.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// `mazu.<direction>.<suffix>`.
pub fn name(direction: Direction, suffix: &str) -> String {
    format!("mazu.{}.{suffix}", direction.as_str())
}

/// The counter of one deny reason: `mazu.<direction>.denied.<reason>`.
pub fn denied_name(direction: Direction, reason: &str) -> String {
    format!("mazu.{}.denied.{reason}", direction.as_str())
}

/// The counter of one fetch failure kind:
/// `mazu.<direction>.registry_fetch_failures.<kind>`.
pub fn fetch_failure_name(direction: Direction, kind: &str) -> String {
    format!("mazu.{}.registry_fetch_failures.{kind}", direction.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_table() {
        for (i, metric) in Fixed::ALL.iter().enumerate() {
            assert_eq!(metric.index(), i);
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            name(Direction::Inbound, Fixed::ConnectionsAllowed.suffix()),
            "mazu.inbound.connections_allowed"
        );
        assert_eq!(
            denied_name(Direction::Outbound, "revoked"),
            "mazu.outbound.denied.revoked"
        );
        assert_eq!(
            fetch_failure_name(Direction::Inbound, "no_answer"),
            "mazu.inbound.registry_fetch_failures.no_answer"
        );
    }
}
