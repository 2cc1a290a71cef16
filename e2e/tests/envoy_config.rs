//! The sidecar templates in `e2e/envoy/` render to a configuration the real
//! Envoy accepts (`envoy --mode validate`), and a broken one is refused, so
//! the check can fail.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use std::path::Path;
use std::process::Command;

use mazu_e2e::envoy_config::{OutboundPeer, SidecarConfig, render};

fn validate(yaml: &str) -> (bool, String) {
    let envoy = mazu_testkit::envoy::envoy_binary().expect("envoy is installed");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(envoy)
        .args(["--mode", "validate", "--config-path"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn rendered(wasm: &Path) -> String {
    let peers = [
        OutboundPeer {
            name: "checkout".into(),
            outbound_port: 15001,
            peer_inbound_port: 15006,
            spiffe_id: "spiffe://cluster.local/ns/shop/sa/checkout".into(),
            host: "checkout.shop.svc.cluster.local".into(),
        },
        OutboundPeer {
            name: "payments".into(),
            outbound_port: 15002,
            peer_inbound_port: 15007,
            spiffe_id: "spiffe://cluster.local/ns/shop/sa/payments".into(),
            host: "payments.shop.svc.cluster.local".into(),
        },
    ];
    // A complete filter configuration: validation runs the filter's own
    // parser inside Envoy, so an incomplete one would be refused.
    let tokens = mazu_testkit::fixtures::Mesh::new();
    let inbound = tokens.config("inbound", "");
    let outbound = tokens.config("outbound", "");
    render(&SidecarConfig {
        service: "frontend",
        namespace: "shop",
        admin_port: 15000,
        inbound_port: 15005,
        workload_port: 8080,
        curator_port: 7878,
        curator_tls_pin: mazu_service::tls::SpkiPin([7; 32]),
        sds_socket: Path::new("/tmp/mazu-e2e-validate/sds.sock"),
        filter_wasm: wasm,
        inbound_plugin_config: &inbound,
        outbound_plugin_config: &outbound,
        peers: &peers,
        istio_san_matchers: false,
    })
    .unwrap()
}

#[test]
fn the_rendered_sidecar_configuration_is_accepted_by_envoy() {
    let wasm = mazu_testkit::filter_wasm::filter_wasm_path().expect("the filter .wasm is built");
    let (ok, output) = validate(&rendered(&wasm));
    assert!(ok, "envoy --mode validate refused the sidecar:\n{output}");
}

#[test]
fn envoy_validation_refuses_a_broken_sidecar_configuration() {
    let wasm = mazu_testkit::filter_wasm::filter_wasm_path().expect("the filter .wasm is built");
    let broken = rendered(&wasm).replace(
        "require_client_certificate: true",
        "require_client_certificate: maybe",
    );
    let (ok, _) = validate(&broken);
    assert!(!ok, "a malformed configuration must be refused");
}
