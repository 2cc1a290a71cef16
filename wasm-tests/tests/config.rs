//! Bad plugin configurations are refused by the real `.wasm`: `on_configure`
//! returns false and the reason is logged at error level.

use mazu_testkit::fixtures::{AUDIENCE, CURATOR_CLUSTER, Mesh, unix_now};
use mazu_testkit::witnessed::curator_signer;
use mazu_wasm_tests::abi::{Action, LogLevel};
use mazu_wasm_tests::harness::module;
use mazu_wasm_tests::plugin::{PeerProperties, Side, Vm};
use mazu_wasm_tests::state::ProcessHandle;

fn start(config: &str) -> Vm {
    let mut vm = Vm::new(
        module(),
        &ProcessHandle::new(),
        &[CURATOR_CLUSTER],
        unix_now() * 1000,
    )
    .expect("instantiate");
    let accepted = vm.start(config.as_bytes()).expect("start");
    assert!(!accepted, "accepted: {config}");
    vm
}

#[test]
fn bad_configurations_are_refused_with_an_error_log() {
    let mesh = Mesh::new();
    let good = mesh.config("inbound", "");
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "no plugin configuration"),
        ("{not json".into(), "key must be a string"),
        (mesh.config("sideways", ""), "unknown variant `sideways`"),
        (
            mesh.config("inbound", r#","park_timeout_ms":0"#),
            "park_timeout_ms: must be between 1 and 60000, got 0",
        ),
        (
            mesh.config("inbound", r#","when_stale":"shrug""#),
            "unknown variant `shrug`",
        ),
        (
            mesh.config("inbound", r#","colour":"blue""#),
            "unknown field `colour`",
        ),
        (
            mesh.config("outbound", r#","before_registry":"park""#),
            "before_registry: \"park\" is only supported",
        ),
        (
            good.replace("\"refresh_interval_ms\":1000", "\"refresh_interval_ms\":1"),
            "curator.refresh_interval_ms: must be between 100",
        ),
        (
            mesh.config_with("inbound", "", ""),
            "curator.checkpoint_key: is required",
        ),
        (
            mesh.config_with(
                "inbound",
                &format!(
                    r#","checkpoint_key":"{}""#,
                    curator_signer().verifier().to_vkey()
                ),
                "",
            ),
            "curator.witnesses: must list at least one witness key",
        ),
        (
            good.replace("\"witness_quorum\":2", "\"witness_quorum\":3"),
            "curator.witness_quorum: must be between 1 and 2, got 3",
        ),
        (
            mesh.config_with("inbound", r#","registry_path":"/v1/registry""#, ""),
            "unknown field `registry_path`",
        ),
        (
            good.replace(
                "\"trust_domain\":\"cluster.local\"",
                "\"trust_domain\":\"Cluster Local\"",
            ),
            "trust.trust_domain:",
        ),
        (
            good.replace(&format!("\"audience\":\"{AUDIENCE}\""), "\"audience\":\"\""),
            "trust.audience: must not be empty",
        ),
        (
            good.replace(
                &format!("\"audience\":\"{AUDIENCE}\""),
                "\"audience\":\"mazu\"",
            ),
            "trust.audience: audience \"mazu\" is shared by every Mazu deployment",
        ),
        (
            good.replace(",\"namespaces\":[\"*\"]", ""),
            "trust.issuers[0].namespaces: is required",
        ),
        (
            good.replace(&mesh.jwks_json(), "{\"keys\":[{\"kty\":\"oct\"}]}"),
            "trust.issuers[0].jwks:",
        ),
    ];
    for (config, expected) in &cases {
        let vm = start(config);
        let error = vm
            .logs()
            .iter()
            .find(|l| l.level == LogLevel::Error)
            .unwrap_or_else(|| panic!("no error logged for {config}"));
        assert!(
            error
                .message
                .starts_with("mazu-filter: invalid plugin configuration: ")
                && error.message.contains(expected),
            "expected {expected:?} in {:?}",
            error.message
        );
    }
}

#[test]
fn a_refused_configuration_lets_nothing_through() {
    // Envoy does not create connections on a plugin whose configuration
    // failed; if a host did anyway, the filter closes them.
    let mut vm = start("{}");
    let (id, _) = vm
        .connect(
            Side::Downstream,
            &PeerProperties {
                mtls: Some(true),
                peer_certificate: Some("x".into()),
                digest: None,
                ..PeerProperties::default()
            },
        )
        .unwrap();
    assert_eq!(vm.downstream_data(id, b"x").unwrap(), Action::Pause);
    assert!(vm.connection(id).unwrap().closed_downstream);
}
