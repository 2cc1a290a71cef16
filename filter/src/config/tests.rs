use super::*;
use crate::testing::{Fixture, curator_signer, log_members, witness_signer};

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
    assert_eq!(config.curator.checkpoint_key, curator_signer().verifier());
    let policy = config.curator.witnesses.expect("witnesses");
    assert_eq!(policy.quorum, 2);
    assert_eq!(
        policy.witnesses,
        vec![witness_signer(1).verifier(), witness_signer(2).verifier()]
    );
}

/// A configuration whose `curator` object has `members` (besides cluster
/// and authority).
fn with_curator(members: &str) -> Result<FilterConfig, ConfigError> {
    let json = Fixture::new().config_json("").replace(
        &format!(r#""authority":"curator.local",{}"#, log_members()),
        &format!(r#""authority":"curator.local"{members}"#),
    );
    FilterConfig::parse(json.as_bytes())
}

#[test]
fn the_witness_quorum_defaults_to_every_witness_and_keys_may_end_in_a_newline() {
    let config = with_curator(&format!(
        r#","checkpoint_key":"{}\n","witnesses":["{}","{}\n","{}"]"#,
        curator_signer().verifier().to_vkey(),
        witness_signer(1).verifier().to_vkey(),
        witness_signer(2).verifier().to_vkey(),
        witness_signer(3).verifier().to_vkey(),
    ))
    .unwrap();
    assert_eq!(config.curator.witnesses.map(|p| p.quorum), Some(3));
}

#[test]
fn no_witnesses_is_refused_unless_explicitly_insecure() {
    let key = format!(
        r#","checkpoint_key":"{}""#,
        curator_signer().verifier().to_vkey()
    );
    let refused = |members: &str| with_curator(members).unwrap_err().to_string();
    assert!(refused(&key).contains("curator.witnesses: must list at least one witness key"));
    assert!(
        refused(&format!(r#"{key},"witnesses":[]"#))
            .contains("curator.witnesses: must list at least one")
    );
    assert!(
        refused(&format!(r#"{key},"insecure_no_witness":false"#))
            .contains("curator.witnesses: must list at least one")
    );
    assert!(
        refused(&format!(
            r#"{key},"witness_quorum":1,"insecure_no_witness":true"#
        ))
        .contains("curator.witness_quorum: is 1 but curator.witnesses lists none")
    );
    let insecure = with_curator(&format!(r#"{key},"insecure_no_witness":true"#)).unwrap();
    assert_eq!(insecure.curator.witnesses, None);
    // The checkpoint key is required whatever the witnesses.
    assert!(
        refused(&format!(
            r#","witnesses":["{}"]"#,
            witness_signer(1).verifier().to_vkey()
        ))
        .contains("curator.checkpoint_key: is required")
    );
    assert!(
        refused(r#","insecure_no_witness":true"#).contains("curator.checkpoint_key: is required")
    );
}

#[test]
fn witness_keys_and_quorums_are_checked() {
    let key = format!(
        r#","checkpoint_key":"{}""#,
        curator_signer().verifier().to_vkey()
    );
    let w1 = witness_signer(1).verifier().to_vkey();
    let w2 = witness_signer(2).verifier().to_vkey();
    let refused = |members: &str| with_curator(members).unwrap_err().to_string();
    let cases = [
        (
            format!(r#"{key},"witnesses":["{w1}","nope"]"#),
            "curator.witnesses[1]: not a witness verifier key",
        ),
        (
            // A log key is not a witness key.
            format!(
                r#"{key},"witnesses":["{}"]"#,
                curator_signer().verifier().to_vkey()
            ),
            "curator.witnesses[0]: not a witness verifier key",
        ),
        (
            format!(r#"{key},"witnesses":["{w1}","{w2}"],"witness_quorum":3"#),
            "curator.witness_quorum: must be between 1 and 2, got 3",
        ),
        (
            format!(r#"{key},"witnesses":["{w1}","{w2}"],"witness_quorum":0"#),
            "curator.witness_quorum: must be between 1 and 2, got 0",
        ),
        (
            format!(r#"{key},"witnesses":["{w1}","{w1}"]"#),
            "curator.witnesses: invalid witness policy: two witnesses have the same name",
        ),
    ];
    for (members, expected) in &cases {
        let message = refused(members);
        assert!(message.contains(expected), "{members}: {message}");
    }
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
            // The registry path of log format 1 is gone with it.
            r#""curator":{"cluster":"c","authority":"a","registry_path":"/v1/registry"}"#,
            "unknown field `registry_path`",
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
    let curator = format!(
        r#""curator":{{"cluster":"c","authority":"a",{}}}"#,
        log_members()
    );
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
