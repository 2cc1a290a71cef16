use super::*;
use crate::testing::Fixture;

fn parse_with(fixture: &Fixture, extra: &str) -> Result<FilterConfig, ConfigError> {
    FilterConfig::parse(fixture.config_json(extra).as_bytes())
}

fn problem(fixture: &Fixture, extra: &str) -> String {
    parse_with(fixture, extra)
        .expect_err("configuration should be refused")
        .to_string()
}

#[test]
fn minimal_configuration_takes_the_defaults() {
    let fixture = Fixture::new();
    let config = parse_with(&fixture, "").unwrap();
    assert_eq!(config.direction, Direction::Inbound);
    assert_eq!(config.curator.cluster, "mazu-curator");
    assert_eq!(config.curator.registry_path, defaults::REGISTRY_PATH);
    assert_eq!(
        config.curator.refresh_interval_ms,
        defaults::REFRESH_INTERVAL_MS
    );
    assert_eq!(config.curator.timeout_ms, defaults::TIMEOUT_MS);
    assert_eq!(config.before_registry, BeforeRegistry::Deny);
    assert_eq!(config.when_stale, WhenStale::Deny);
    assert_eq!(config.max_staleness_secs, defaults::MAX_STALENESS_SECS);
    assert_eq!(config.trust.trust_domain().as_str(), "cluster.local");
    assert_eq!(config.tick_period_ms(), 1_000);
    assert_eq!(config.curator.checkpoint_key, None);
}

#[test]
fn a_checkpoint_key_is_read() {
    let signer = mazu_log::CheckpointSigner::new("mazu-curator/0123", &[1; 32]).unwrap();
    let vkey = signer.verifier().to_vkey();
    let json = Fixture::new().config_json("").replace(
        r#""authority":"curator.local"}"#,
        &format!(r#""authority":"curator.local","checkpoint_key":"{vkey}\n"}}"#),
    );
    let config = FilterConfig::parse(json.as_bytes()).unwrap();
    assert_eq!(config.curator.checkpoint_key, Some(signer.verifier()));
}

#[test]
fn every_option_is_read() {
    let fixture = Fixture::new();
    let config = parse_with(
        &fixture,
        r#","before_registry":"park","park_timeout_ms":3000,"max_parked":10,
           "max_staleness_secs":60,"when_stale":"enforce_last_known",
           "verdict_cache_entries":99"#,
    )
    .unwrap();
    assert_eq!(
        config.before_registry,
        BeforeRegistry::Park { timeout_ms: 3000 }
    );
    assert_eq!(config.max_parked, 10);
    assert_eq!(config.max_staleness_secs, 60);
    assert_eq!(config.when_stale, WhenStale::EnforceLastKnown);
    assert_eq!(config.verdict_cache_entries, 99);
    assert_eq!(config.tick_period_ms(), 300);
}

#[test]
fn refusals_name_the_field() {
    let fixture = Fixture::new();
    let cases: &[(&str, &str)] = &[
        (r#","typo":1"#, "unknown field `typo`"),
        (r#","before_registry":"wait""#, "unknown variant `wait`"),
        (
            r#","park_timeout_ms":0"#,
            "park_timeout_ms: must be between 1 and 60000, got 0",
        ),
        (
            r#","max_parked":0"#,
            "max_parked: must be between 1 and 65536",
        ),
        (
            r#","max_staleness_secs":1"#,
            "max_staleness_secs: must be between 10",
        ),
        (r#","when_stale":"allow""#, "unknown variant `allow`"),
        (
            r#","verdict_cache_entries":0"#,
            "verdict_cache_entries: must be between 1",
        ),
    ];
    for (extra, expected) in cases {
        let message = problem(&fixture, extra);
        assert!(message.contains(expected), "{extra}: {message}");
    }
}

#[test]
fn curator_fields_are_checked() {
    let jwks = Fixture::new().issuer.jwks_json();
    let trust = format!(
        r#""trust":{{"trust_domain":"cluster.local","audience":"mazu:test",
            "issuers":[{{"issuer":"https://issuer","jwks":{jwks},"namespaces":["*"]}}]}}"#
    );
    let cases: &[(&str, &str)] = &[
        (
            r#""curator":{"authority":"a"}"#,
            "curator.cluster: is required",
        ),
        (
            r#""curator":{"cluster":"c"}"#,
            "curator.authority: is required",
        ),
        (
            r#""curator":{"cluster":"","authority":"a"}"#,
            "curator.cluster: must not be empty",
        ),
        (
            r#""curator":{"cluster":"c d","authority":"a"}"#,
            "curator.cluster: must be printable",
        ),
        (
            r#""curator":{"cluster":"c","authority":"a","registry_path":"v1"}"#,
            "curator.registry_path: must start with '/'",
        ),
        (
            r#""curator":{"cluster":"c","authority":"a","registry_path":"/v1?x=1"}"#,
            "curator.registry_path: must start with '/' and contain no query",
        ),
        (
            r#""curator":{"cluster":"c","authority":"a","refresh_interval_ms":5}"#,
            "curator.refresh_interval_ms: must be between 100 and 3600000, got 5",
        ),
        (
            r#""curator":{"cluster":"c","authority":"a","timeout_ms":0}"#,
            "curator.timeout_ms: must be between 10",
        ),
        (
            r#""curator":{"cluster":"c","authority":"a","port":1}"#,
            "unknown field `port`",
        ),
        (
            r#""curator":{"cluster":"c","authority":"a","checkpoint_key":"mazu-curator/x"}"#,
            "curator.checkpoint_key: not a checkpoint verifier key",
        ),
        (
            r#""curator":{"cluster":"c","authority":"a","checkpoint_key":""}"#,
            "curator.checkpoint_key: not a checkpoint verifier key",
        ),
    ];
    for (curator, expected) in cases {
        let json = format!(r#"{{"direction":"inbound",{curator},{trust}}}"#);
        let message = FilterConfig::parse(json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{curator}: {message}");
    }
}

#[test]
fn trust_fields_are_checked() {
    let jwks = Fixture::new().issuer.jwks_json();
    let curator = r#""curator":{"cluster":"c","authority":"a"}"#;
    let cases: Vec<(String, &str)> = vec![
        (r#""trust":{"audience":"mazu:test","issuers":[]}"#.into(), "trust.trust_domain: is required"),
        (
            r#""trust":{"trust_domain":"Bad Domain","audience":"mazu:test","issuers":[]}"#.into(),
            "trust.trust_domain:",
        ),
        (
            r#""trust":{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[]}"#.into(),
            "trust.issuers: must name at least one issuer",
        ),
        (
            r#""trust":{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[{"issuer":"https://i"}]}"#
                .into(),
            "trust.issuers[0].jwks: is required",
        ),
        (
            r#""trust":{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[{"issuer":"https://i","jwks":{"keys":7}}]}"#
                .into(),
            "trust.issuers[0].jwks: JWKS does not have the RFC 7517 shape",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":["*"]}}]}}"#
            ),
            "trust.audience: is required",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"mazu:test","clock_skew_secs":601,"issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":["*"]}}]}}"#
            ),
            "trust.clock_skew_secs: must be between 0 and 600",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":["*"]}},{{"issuer":"https://i","jwks":{jwks},"namespaces":["*"]}}]}}"#
            ),
            "trust: ",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"mazu","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":["*"]}}]}}"#
            ),
            "trust.audience: audience \"mazu\" is shared by every Mazu deployment",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"MAZU:","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":["*"]}}]}}"#
            ),
            "deployment-unique audience",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"https://i","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":["*"]}}]}}"#
            ),
            "is an issuer URL",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[{{"issuer":"https://i","jwks":{jwks}}}]}}"#
            ),
            "trust.issuers[0].namespaces: is required",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":[]}}]}}"#
            ),
            "trust.issuers[0].namespaces: the namespace list is empty",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":["*","shop"]}}]}}"#
            ),
            "trust.issuers[0].namespaces: \"*\" (every namespace) must be the only entry",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":["Shop"]}}]}}"#
            ),
            "trust.issuers[0].namespaces: \"Shop\" is not a Kubernetes namespace name",
        ),
        (
            format!(
                r#""trust":{{"trust_domain":"cluster.local","audience":"mazu:test","issuers":[{{"issuer":"https://i","jwks":{jwks},"namespaces":"*"}}]}}"#
            ),
            "invalid type",
        ),
    ];
    for (trust, expected) in cases {
        let json = format!(r#"{{"direction":"inbound",{curator},{trust}}}"#);
        let message = FilterConfig::parse(json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{trust}: {message}");
    }
}

#[test]
fn missing_or_malformed_documents() {
    assert_eq!(FilterConfig::parse(b"").unwrap_err(), ConfigError::Empty);
    assert_eq!(
        FilterConfig::parse(b"  \n").unwrap_err(),
        ConfigError::Empty
    );
    assert!(matches!(
        FilterConfig::parse(b"{").unwrap_err(),
        ConfigError::Json(_)
    ));
    assert!(matches!(
        FilterConfig::parse(b"[]").unwrap_err(),
        ConfigError::Json(_)
    ));
    assert!(
        FilterConfig::parse(b"{}")
            .unwrap_err()
            .to_string()
            .contains("direction: is required")
    );
}

#[test]
fn park_is_refused_outbound() {
    let fixture = Fixture::new();
    let json = fixture
        .config_json(r#","before_registry":"park""#)
        .replace("\"inbound\"", "\"outbound\"");
    let message = FilterConfig::parse(json.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("before_registry:"), "{message}");
}
