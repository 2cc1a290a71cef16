//! The plugin configuration: JSON, parsed and validated once in the root
//! context (`on_configure`), then shared read-only with every connection.
//!
//! Every field is checked; the first problem found is reported with the
//! field's path (e.g. `curator.refresh_interval_ms: must be between 100 and
//! 3600000, got 5`). Unknown fields are refused so that a typo cannot silently
//! fall back to a default. The reference is `docs/filter.md`.

use core::fmt;

use mazu_identity::trust::{NamespaceScope, check_audience};
use mazu_identity::{Jwks, TrustConfig, TrustDomain};
use mazu_log::{CheckpointVerifier, WitnessPolicy, WitnessVerifier};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::vouch::TrustDigest;

/// Which peer the filter checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A listener filter chain: check the downstream (client) certificate at
    /// the first `on_downstream_data`.
    Inbound,
    /// An upstream-facing filter chain: check the upstream (server)
    /// certificate at the first `on_upstream_data`, before the server's bytes
    /// reach the client.
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`, as used in metric names and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// What happens to a connection that arrives before any registry was fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeforeRegistry {
    /// Close it (the default).
    Deny,
    /// Hold it (inbound only) until the registry arrives or `timeout_ms` passes,
    /// then decide or close.
    Park {
        /// The longest a connection is held, milliseconds.
        timeout_ms: u64,
    },
}

/// What happens once the registry has not been confirmed by a witnessed
/// checkpoint for longer than `max_staleness_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenStale {
    /// Close every new connection until the curator answers again (the default).
    Deny,
    /// Keep deciding with the last good registry.
    EnforceLastKnown,
}

/// Where and how often the log is followed, and who must vouch for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CuratorConfig {
    /// The Envoy cluster the callouts go to (static or CDS).
    pub cluster: String,
    /// The `:authority` of the callouts.
    pub authority: String,
    /// How often the newest checkpoint is asked for, milliseconds.
    pub refresh_interval_ms: u64,
    /// Timeout of one callout, milliseconds.
    pub timeout_ms: u64,
    /// Largest answer body accepted (a checkpoint or a page of records), bytes.
    pub max_body_bytes: usize,
    /// The curator's checkpoint verifier key: every checkpoint must carry
    /// its signature.
    pub checkpoint_key: CheckpointVerifier,
    /// The witnesses and how many of them must cosign a checkpoint. `None`
    /// only with `insecure_no_witness` (development): the curator alone then
    /// vouches for its log, and freshness counts from its answers.
    pub witnesses: Option<WitnessPolicy>,
}

/// The validated filter configuration.
#[derive(Clone, Debug)]
pub struct FilterConfig {
    /// Which peer is checked.
    pub direction: Direction,
    /// Registry source.
    pub curator: CuratorConfig,
    /// Token and certificate rules for the verdict.
    pub trust: TrustConfig,
    /// The `trust` object's digest: the handshake validator vouches for
    /// token signatures under it (`crate::vouch`).
    pub trust_digest: TrustDigest,
    /// Behaviour before the first registry.
    pub before_registry: BeforeRegistry,
    /// Most connections parked at once per VM; beyond it new ones are closed.
    pub max_parked: usize,
    /// Registry age (since the witnessed time of the newest checkpoint it
    /// was confirmed by) after which `when_stale` applies, seconds.
    pub max_staleness_secs: u64,
    /// Behaviour once the registry is stale.
    pub when_stale: WhenStale,
    /// Most cached verdicts per VM.
    pub verdict_cache_entries: usize,
}

/// Defaults, documented in `docs/filter.md`.
pub mod defaults {
    /// `curator.refresh_interval_ms`.
    pub const REFRESH_INTERVAL_MS: u64 = 5_000;
    /// `curator.timeout_ms`.
    pub const TIMEOUT_MS: u64 = 2_000;
    /// `curator.max_body_bytes`: 4 MiB, a full page of 16384 records
    /// (at most 114 bytes each) with room to spare.
    pub const MAX_BODY_BYTES: usize = 4 << 20;
    /// `park_timeout_ms`.
    pub const PARK_TIMEOUT_MS: u64 = 5_000;
    /// `max_parked`.
    pub const MAX_PARKED: usize = 1_024;
    /// `max_staleness_secs`: 15 minutes.
    pub const MAX_STALENESS_SECS: u64 = 900;
    /// `verdict_cache_entries`.
    pub const VERDICT_CACHE_ENTRIES: usize = 4_096;
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No configuration was given at all.
    Empty,
    /// Not JSON of the expected shape (unknown field, wrong type, missing field).
    Json(String),
    /// A field's value is not acceptable.
    Invalid {
        /// The field's path, e.g. `curator.timeout_ms`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Empty => f.write_str("no plugin configuration (expected a JSON object)"),
            ConfigError::Json(message) => write!(f, "{message}"),
            ConfigError::Invalid { field, problem } => write!(f, "{field}: {problem}"),
        }
    }
}

impl core::error::Error for ConfigError {}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig<'a> {
    direction: Option<Direction>,
    curator: Option<RawCurator>,
    #[serde(borrow)]
    trust: Option<&'a RawValue>,
    before_registry: Option<RawBeforeRegistry>,
    park_timeout_ms: Option<u64>,
    max_parked: Option<u64>,
    max_staleness_secs: Option<u64>,
    when_stale: Option<WhenStale>,
    verdict_cache_entries: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawBeforeRegistry {
    Deny,
    Park,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCurator {
    cluster: Option<String>,
    authority: Option<String>,
    refresh_interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    max_body_bytes: Option<u64>,
    checkpoint_key: Option<String>,
    witnesses: Option<Vec<String>>,
    witness_quorum: Option<u64>,
    insecure_no_witness: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust<'a> {
    trust_domain: Option<String>,
    #[serde(borrow)]
    issuers: Option<Vec<RawIssuer<'a>>>,
    audience: Option<String>,
    clock_skew_secs: Option<u64>,
    max_token_bytes: Option<u64>,
    max_certificate_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer<'a> {
    issuer: Option<String>,
    #[serde(borrow)]
    jwks: Option<&'a RawValue>,
    namespaces: Option<Vec<String>>,
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| invalid(field, "is required"))
}

fn in_range(value: u64, field: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

/// A non-empty printable-ASCII string without spaces, at most `max` bytes.
fn token_like(value: String, field: &str, max: usize) -> Result<String, ConfigError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("must be at most {max} bytes")));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            field,
            "must be printable ASCII without spaces or control characters",
        ));
    }
    Ok(value)
}

impl FilterConfig {
    /// Parses and validates the plugin configuration bytes.
    pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::Empty);
        }
        let raw: RawConfig<'_> =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;

        let direction = required(raw.direction, "direction")?;
        let curator = parse_curator(required(raw.curator, "curator")?)?;
        let trust_json = required(raw.trust, "trust")?.get().as_bytes();
        let trust = parse_trust_section(trust_json)?;
        let trust_digest = TrustDigest::of_json(trust_json)
            .ok_or_else(|| ConfigError::Json("trust: not JSON".into()))?;

        let park_timeout_ms = in_range(
            raw.park_timeout_ms.unwrap_or(defaults::PARK_TIMEOUT_MS),
            "park_timeout_ms",
            1,
            60_000,
        )?;
        let before_registry = match raw.before_registry.unwrap_or(RawBeforeRegistry::Deny) {
            RawBeforeRegistry::Deny => BeforeRegistry::Deny,
            RawBeforeRegistry::Park if direction == Direction::Outbound => {
                return Err(invalid(
                    "before_registry",
                    "\"park\" is only supported for direction \"inbound\" \
                     (Envoy cannot resume a paused upstream)",
                ));
            }
            RawBeforeRegistry::Park => BeforeRegistry::Park {
                timeout_ms: park_timeout_ms,
            },
        };
        let max_parked = in_range(
            raw.max_parked.unwrap_or(defaults::MAX_PARKED as u64),
            "max_parked",
            1,
            65_536,
        )?;
        let refresh_secs = curator.refresh_interval_ms.div_ceil(1000);
        let max_staleness_secs = in_range(
            raw.max_staleness_secs
                .unwrap_or(defaults::MAX_STALENESS_SECS),
            "max_staleness_secs",
            // At least two refresh intervals, so one lost answer is not an outage.
            (2 * refresh_secs).max(10),
            7 * 24 * 3600,
        )?;
        let verdict_cache_entries = in_range(
            raw.verdict_cache_entries
                .unwrap_or(defaults::VERDICT_CACHE_ENTRIES as u64),
            "verdict_cache_entries",
            1,
            1_000_000,
        )?;
        Ok(FilterConfig {
            direction,
            curator,
            trust,
            trust_digest,
            before_registry,
            max_parked: usize::try_from(max_parked).unwrap_or(defaults::MAX_PARKED),
            max_staleness_secs,
            when_stale: raw.when_stale.unwrap_or(WhenStale::Deny),
            verdict_cache_entries: usize::try_from(verdict_cache_entries)
                .unwrap_or(defaults::VERDICT_CACHE_ENTRIES),
        })
    }

    /// How often the root context ticks: four times per refresh interval
    /// (so a fetch starts at most a quarter interval late), often enough to
    /// release parked connections within ~10% of their timeout, never more
    /// often than every 50 ms nor less than every second.
    pub fn tick_period_ms(&self) -> u64 {
        let mut period = self.curator.refresh_interval_ms / 4;
        if let BeforeRegistry::Park { timeout_ms } = self.before_registry {
            period = period.min(timeout_ms / 10);
        }
        period.clamp(50, 1_000)
    }
}

fn parse_curator(raw: RawCurator) -> Result<CuratorConfig, ConfigError> {
    let cluster = token_like(
        required(raw.cluster, "curator.cluster")?,
        "curator.cluster",
        1024,
    )?;
    let authority = token_like(
        required(raw.authority, "curator.authority")?,
        "curator.authority",
        1024,
    )?;
    let refresh_interval_ms = in_range(
        raw.refresh_interval_ms
            .unwrap_or(defaults::REFRESH_INTERVAL_MS),
        "curator.refresh_interval_ms",
        100,
        3_600_000,
    )?;
    let timeout_ms = in_range(
        raw.timeout_ms.unwrap_or(defaults::TIMEOUT_MS),
        "curator.timeout_ms",
        10,
        60_000,
    )?;
    let max_body_bytes = in_range(
        raw.max_body_bytes
            .unwrap_or(defaults::MAX_BODY_BYTES as u64),
        "curator.max_body_bytes",
        1_024,
        1 << 30,
    )?;
    let checkpoint_key = CheckpointVerifier::parse(
        required(raw.checkpoint_key, "curator.checkpoint_key")?.trim(),
    )
    .map_err(|e| {
        invalid(
            "curator.checkpoint_key",
            format!(
                "not a checkpoint verifier key (name+hash+key, as served at /v1/checkpoint/key): {e}"
            ),
        )
    })?;
    let witnesses = parse_witnesses(
        raw.witnesses.unwrap_or_default(),
        raw.witness_quorum,
        raw.insecure_no_witness.unwrap_or(false),
    )?;
    Ok(CuratorConfig {
        cluster,
        authority,
        refresh_interval_ms,
        timeout_ms,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(defaults::MAX_BODY_BYTES),
        checkpoint_key,
        witnesses,
    })
}

/// The witness policy: every listed key parsed, the quorum (default: all of
/// them) within range. No witnesses is refused unless `insecure` says so,
/// because without them the curator alone decides what log every proxy sees.
fn parse_witnesses(
    vkeys: Vec<String>,
    quorum: Option<u64>,
    insecure: bool,
) -> Result<Option<WitnessPolicy>, ConfigError> {
    if vkeys.is_empty() {
        if let Some(quorum) = quorum.filter(|&q| q != 0) {
            return Err(invalid(
                "curator.witness_quorum",
                format!("is {quorum} but curator.witnesses lists none"),
            ));
        }
        return if insecure {
            Ok(None)
        } else {
            Err(invalid(
                "curator.witnesses",
                "must list at least one witness key (or set curator.insecure_no_witness: true, \
                 for development only: the curator could then show each proxy another log)",
            ))
        };
    }
    let mut witnesses = Vec::with_capacity(vkeys.len());
    for (i, vkey) in vkeys.iter().enumerate() {
        let witness = WitnessVerifier::parse(vkey.trim()).map_err(|e| {
            invalid(
                format!("curator.witnesses[{i}]"),
                format!("not a witness verifier key (name+id+key): {e}"),
            )
        })?;
        witnesses.push(witness);
    }
    let count = witnesses.len() as u64;
    let quorum = in_range(quorum.unwrap_or(count), "curator.witness_quorum", 1, count)?;
    let quorum = usize::try_from(quorum).unwrap_or(usize::MAX);
    WitnessPolicy::new(witnesses, quorum)
        .map(Some)
        .map_err(|e| invalid("curator.witnesses", e.to_string()))
}

/// Parses a `trust` object on its own (the JSON of the configuration's
/// `trust` member), with the same checks and messages: for components that
/// decide with the filter's trust configuration outside the filter, such as
/// the handshake validator.
pub fn parse_trust_section(json: &[u8]) -> Result<TrustConfig, ConfigError> {
    let raw: RawTrust<'_> =
        serde_json::from_slice(json).map_err(|e| ConfigError::Json(format!("trust: {e}")))?;
    parse_trust(raw)
}

fn parse_trust(raw: RawTrust<'_>) -> Result<TrustConfig, ConfigError> {
    let trust_domain = required(raw.trust_domain, "trust.trust_domain")?;
    TrustDomain::new(&trust_domain).map_err(|e| invalid("trust.trust_domain", e.to_string()))?;
    let raw_issuers = required(raw.issuers, "trust.issuers")?;
    if raw_issuers.is_empty() {
        return Err(invalid("trust.issuers", "must name at least one issuer"));
    }
    let mut builder = TrustConfig::builder(&trust_domain);
    for (i, raw_issuer) in raw_issuers.into_iter().enumerate() {
        let field = format!("trust.issuers[{i}]");
        let url = token_like(
            required(raw_issuer.issuer, &format!("{field}.issuer"))?,
            &format!("{field}.issuer"),
            2048,
        )?;
        let jwks_raw = required(raw_issuer.jwks, &format!("{field}.jwks"))?;
        // Parsed here too, so that the message names the field.
        let jwks = Jwks::from_json(jwks_raw.get().as_bytes())
            .map_err(|e| invalid(format!("{field}.jwks"), e.to_string()))?;
        let namespaces = required(raw_issuer.namespaces, &format!("{field}.namespaces"))?;
        let scope = NamespaceScope::namespaces(&namespaces)
            .map_err(|e| invalid(format!("{field}.namespaces"), e.to_string()))?;
        builder = builder.issuer_jwks(&url, jwks, scope);
    }
    let audience = token_like(
        required(raw.audience, "trust.audience")?,
        "trust.audience",
        1024,
    )?;
    check_audience(&audience).map_err(|e| invalid("trust.audience", e.to_string()))?;
    builder = builder.audience(&audience);
    if let Some(skew) = raw.clock_skew_secs {
        builder = builder.clock_skew_secs(in_range(
            skew,
            "trust.clock_skew_secs",
            0,
            mazu_identity::jwt::MAX_CLOCK_SKEW_SECS,
        )?);
    }
    if let Some(len) = raw.max_token_bytes {
        builder = builder.max_token_len(usize::try_from(len).unwrap_or(usize::MAX));
    }
    if let Some(len) = raw.max_certificate_bytes {
        builder = builder.max_certificate_len(usize::try_from(len).unwrap_or(usize::MAX));
    }
    builder.build().map_err(|e| invalid("trust", e.to_string()))
}

#[cfg(test)]
mod tests;
