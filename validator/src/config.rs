//! The validator's configuration: the `validator_config` string of Envoy's
//! `DynamicModuleCertValidatorConfig` (a `google.protobuf.StringValue`
//! holding JSON), usually served by the node agent in the `ROOTCA` secret.
//!
//! ```json
//! {
//!   "registry_file": "/var/run/mazu/registry",
//!   "max_registry_age_ms": 900000,
//!   "trust": { "...": "the filter's trust object, unchanged" },
//!   "destinations": {
//!     "checkout.shop.svc.cluster.local": ["spiffe://cluster.local/ns/shop/sa/checkout"]
//!   }
//! }
//! ```
//!
//! `destinations` names, for each host a client of this proxy may reach, the
//! SPIFFE IDs allowed to serve it; an outbound handshake to a host not listed
//! fails (fail closed). Inbound, any peer the verdict admits passes, and
//! Istio's authorization policies decide on its (now checked) SPIFFE ID.

use core::time::Duration;
use std::collections::BTreeMap;
use std::path::PathBuf;

use mazu_identity::{SpiffeId, TrustConfig};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Default `max_registry_age_ms`: 15 minutes since the witnesses last
/// vouched for the registry, the filter's default `max_staleness_secs`.
pub const DEFAULT_MAX_REGISTRY_AGE_MS: u64 = 900_000;
/// Default `recheck_interval_ms`: how often the registry file is looked at.
pub const DEFAULT_RECHECK_INTERVAL_MS: u64 = 500;

/// Why a configuration was refused (Envoy then refuses the TLS context).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not JSON of the expected shape.
    #[error("validator configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// The `trust` object is refused with the filter's own checks.
    #[error("validator configuration: {0}")]
    Trust(#[from] mazu_filter::config::ConfigError),
    /// A field's value is not acceptable.
    #[error("validator configuration: {field}: {problem}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct ValidatorConfig {
    /// The registry file the node agent writes.
    pub registry_file: PathBuf,
    /// The registry is refused once the witnesses vouched for it longer ago.
    pub max_registry_age: Duration,
    /// How often the file is looked at for a new registry.
    pub recheck_interval: Duration,
    /// Token issuers, audience, trust domain: the verdict's configuration.
    pub trust: TrustConfig,
    /// The `trust` object as written: validators with the same one share a
    /// verdict cache (`crate::shared`).
    pub trust_json: String,
    /// The node agent's digest of the live registered keys (`live_keys`),
    /// if it set one. Only its change matters: it makes Envoy build new TLS
    /// contexts, so a session made before cannot be resumed.
    pub live_keys: Option<String>,
    /// Host → the SPIFFE IDs allowed to serve it.
    pub destinations: BTreeMap<String, Vec<SpiffeId>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig<'a> {
    registry_file: Option<String>,
    max_registry_age_ms: Option<u64>,
    recheck_interval_ms: Option<u64>,
    #[serde(borrow)]
    trust: Option<&'a RawValue>,
    #[serde(default)]
    destinations: BTreeMap<String, Vec<String>>,
    live_keys: Option<String>,
}

/// The longest `live_keys` accepted (a hex SHA-256).
const MAX_LIVE_KEYS_LEN: usize = 64;

impl ValidatorConfig {
    /// Parses and checks the configuration bytes.
    pub fn parse(bytes: &[u8]) -> Result<ValidatorConfig, ConfigError> {
        let raw: RawConfig<'_> = serde_json::from_slice(bytes)?;
        let registry_file = raw
            .registry_file
            .filter(|path| path.starts_with('/'))
            .ok_or_else(|| invalid("registry_file", "an absolute path is required"))?;
        let max_age = raw
            .max_registry_age_ms
            .unwrap_or(DEFAULT_MAX_REGISTRY_AGE_MS);
        if !(1_000..=3_600_000).contains(&max_age) {
            return Err(invalid(
                "max_registry_age_ms",
                format!("must be between 1000 and 3600000, got {max_age}"),
            ));
        }
        let recheck = raw
            .recheck_interval_ms
            .unwrap_or(DEFAULT_RECHECK_INTERVAL_MS);
        if !(10..=max_age).contains(&recheck) {
            return Err(invalid(
                "recheck_interval_ms",
                format!("must be between 10 and max_registry_age_ms, got {recheck}"),
            ));
        }
        let trust_json = raw
            .trust
            .ok_or_else(|| invalid("trust", "is required (the filter's trust object)"))?;
        let trust = mazu_filter::config::parse_trust_section(trust_json.get().as_bytes())?;
        let mut destinations = BTreeMap::new();
        for (host, ids) in raw.destinations {
            let field = format!("destinations.{host}");
            if host.is_empty() || ids.is_empty() {
                return Err(invalid(field, "a host with at least one SPIFFE ID"));
            }
            let ids = ids
                .iter()
                .map(|id| {
                    let parsed = SpiffeId::parse(id).map_err(|e| invalid(&field, e.to_string()))?;
                    if parsed.trust_domain() != trust.trust_domain() {
                        return Err(invalid(&field, format!("{id} is not in the trust domain")));
                    }
                    Ok(parsed)
                })
                .collect::<Result<Vec<_>, _>>()?;
            destinations.insert(host.to_ascii_lowercase(), ids);
        }
        if let Some(digest) = &raw.live_keys
            && (digest.is_empty()
                || digest.len() > MAX_LIVE_KEYS_LEN
                || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(invalid("live_keys", "at most 64 hex digits"));
        }
        Ok(ValidatorConfig {
            registry_file: PathBuf::from(registry_file),
            max_registry_age: Duration::from_millis(max_age),
            recheck_interval: Duration::from_millis(recheck),
            trust,
            trust_json: trust_json.get().to_owned(),
            live_keys: raw.live_keys,
            destinations,
        })
    }

    /// The SPIFFE IDs allowed to serve the destination named by `sni`, if
    /// the destination is known ([`destination_host`] gives the host).
    pub fn expected_servers(&self, sni: &str) -> Option<&[SpiffeId]> {
        self.destinations
            .get(&destination_host(sni).to_ascii_lowercase())
            .map(Vec::as_slice)
    }
}

/// The host an upstream SNI names. Istio's clients send
/// `outbound_.<port>_.<subset>_.<host>` (e.g.
/// `outbound_.8080_._.checkout.shop.svc.cluster.local`); any other SNI is
/// the host itself.
pub fn destination_host(sni: &str) -> &str {
    let mut parts = sni.splitn(4, "_.");
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("outbound"), Some(port), Some(_subset), Some(host))
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => sni,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","alg":"ES256","use":"sig",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    fn config(members: &str) -> String {
        format!(
            r#"{{"registry_file":"/run/mazu/registry",
                "trust":{{"trust_domain":"cluster.local","audience":"mazu:test-deployment",
                  "issuers":[{{"issuer":"https://issuer","jwks":{JWKS},"namespaces":["*"]}}]}}
                {members}}}"#
        )
    }

    #[test]
    fn a_full_configuration_parses() {
        let parsed = ValidatorConfig::parse(
            config(r#","max_registry_age_ms":5000,"live_keys":"00ff","destinations":{"Checkout.shop.svc.cluster.local":["spiffe://cluster.local/ns/shop/sa/checkout"]}"#)
                .as_bytes(),
        )
        .expect("valid");
        assert_eq!(parsed.max_registry_age, Duration::from_secs(5));
        assert_eq!(parsed.live_keys.as_deref(), Some("00ff"));
        let expected = parsed
            .expected_servers("outbound_.8080_._.checkout.shop.svc.cluster.local")
            .expect("known destination");
        assert_eq!(
            expected[0].as_str(),
            "spiffe://cluster.local/ns/shop/sa/checkout"
        );
        assert!(
            parsed
                .expected_servers("outbound_.8080_._.cart.shop.svc.cluster.local")
                .is_none()
        );
    }

    #[test]
    fn bad_configurations_are_refused_with_the_field() {
        for (members, field) in [
            (r#","max_registry_age_ms":10"#, "max_registry_age_ms"),
            (r#","recheck_interval_ms":0"#, "recheck_interval_ms"),
            (r#","destinations":{"a":[]}"#, "destinations.a"),
            (r#","destinations":{"a":["https://x"]}"#, "destinations.a"),
            (
                r#","destinations":{"a":["spiffe://other.domain/ns/a/sa/b"]}"#,
                "destinations.a",
            ),
            (r#","live_keys":"not hex""#, "live_keys"),
            (r#","live_keys":"""#, "live_keys"),
        ] {
            let err = ValidatorConfig::parse(config(members).as_bytes()).expect_err(members);
            assert!(err.to_string().contains(field), "{members}: {err}");
        }
        assert!(ValidatorConfig::parse(br#"{"registry_file":"/r"}"#).is_err());
        assert!(ValidatorConfig::parse(config(r#","extra":1"#).as_bytes()).is_err());
        let relative = config("").replace("/run/mazu/registry", "registry");
        assert!(ValidatorConfig::parse(relative.as_bytes()).is_err());
        let bad_trust = config("").replace("cluster.local", "");
        assert!(ValidatorConfig::parse(bad_trust.as_bytes()).is_err());
    }

    #[test]
    fn the_destination_is_istios_host_or_the_sni() {
        for (sni, host) in [
            (
                "outbound_.8080_._.checkout.shop.svc.cluster.local",
                "checkout.shop.svc.cluster.local",
            ),
            (
                "outbound_.80_.v1_.reviews.default.svc.cluster.local",
                "reviews.default.svc.cluster.local",
            ),
            (
                "checkout.shop.svc.cluster.local",
                "checkout.shop.svc.cluster.local",
            ),
            ("outbound_.x_._.evil", "outbound_.x_._.evil"),
            ("", ""),
        ] {
            assert_eq!(destination_host(sni), host, "{sni}");
        }
    }
}
