//! The validator module in the real Envoy 1.40: every decision is a TLS
//! handshake that completes or fails.
//!
//! One Envoy loads `libmazu_validator.so` (built with this crate) on an
//! inbound listener (`require_client_certificate`, `tcp_proxy` to an echo
//! server) and on outbound clusters whose SNI is Istio's
//! `outbound_.8080_._.<host>`, each pointing at an [`Impostor`] TLS server
//! that counts the application bytes it receives. The registry file is
//! written as the node agent writes it, and kept fresh by a heartbeat thread
//! as the agent does after each verified checkpoint.

mod support;

use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::thread;

use mazu_testkit::fixtures::{Mesh, Workload};
use mazu_testkit::net::{Impostor, echo_server, free_port, tls_round_trip};
use support::{
    CHECKOUT_HOST, EnvoySpec, Heartbeat, Outbound, ValidatorEnvoy, config, workload, write_registry,
};

const CART_HOST: &str = "cart.shop.svc.cluster.local";

/// Sends `message` through an outbound listener, waits, and returns what
/// the upstream impostor had received by then.
fn send_outbound(listener_port: u16, impostor: &Impostor, message: &[u8]) -> Vec<u8> {
    if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", listener_port)) {
        let _ = stream.write_all(message);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(1500)));
        let mut sink = [0u8; 64];
        let _ = stream.read(&mut sink);
    }
    impostor.received()
}

#[test]
fn the_handshake_admits_registered_peers_and_only_the_expected_server() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().expect("dir");
    let frontend = workload(&mesh, "shop", "frontend", 0);
    let checkout = workload(&mesh, "shop", "checkout", 1);
    let cart = workload(&mesh, "shop", "cart", 2);
    let unregistered = workload(&mesh, "shop", "checkout", 3);
    let registry_path = dir.path().join("registry");
    let registered = [frontend.entry, checkout.entry, cart.entry];
    write_registry(&registry_path, &registered);
    let heartbeat = Heartbeat::start(registry_path.clone());

    // Upstreams: the genuine checkout; a registered workload of another
    // service account; checkout's token under an unregistered key; a
    // certificate without any token; cart, genuine, but for a host the
    // configuration does not list.
    mazu_testkit::envoy::make_self_signed(dir.path(), "plain", CHECKOUT_HOST).expect("openssl req");
    let plain_pem = std::fs::read_to_string(dir.path().join("plain.crt")).expect("cert");
    let plain_key = std::fs::read_to_string(dir.path().join("plain.key")).expect("key");
    let upstreams: Vec<(&str, &'static str, String, String)> = vec![
        (
            "genuine",
            CHECKOUT_HOST,
            checkout.cert_pem.clone(),
            checkout.key_pem.clone(),
        ),
        (
            "other_service",
            CHECKOUT_HOST,
            cart.cert_pem.clone(),
            cart.key_pem.clone(),
        ),
        (
            "unregistered_key",
            CHECKOUT_HOST,
            unregistered.cert_pem.clone(),
            unregistered.key_pem.clone(),
        ),
        ("no_token", CHECKOUT_HOST, plain_pem, plain_key),
        (
            "unknown_destination",
            CART_HOST,
            cart.cert_pem.clone(),
            cart.key_pem.clone(),
        ),
    ];
    let mut impostors = Vec::new();
    let mut routes = Vec::new();
    for (name, host, cert, key) in &upstreams {
        let port = free_port().expect("port");
        impostors.push((
            *name,
            Impostor::start(port, cert, key, dir.path()).expect("impostor"),
        ));
        routes.push(Outbound {
            listener_port: free_port().expect("port"),
            host,
            upstream_port: port,
        });
    }
    let echo = echo_server().expect("echo");
    let config = config(&registry_path, &mesh);
    let envoy = ValidatorEnvoy::start(
        dir.path(),
        &EnvoySpec {
            config: &config,
            server: &checkout,
            client: &frontend,
            echo_port: echo.port,
            outbound: &routes,
            pinned_inbound: None,
            concurrency: 1,
        },
    )
    .expect("envoy with the validator module");

    // Outbound: only the genuine server receives the request.
    let secret = b"GET /orders HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n";
    for ((name, impostor), route) in impostors.iter().zip(&routes) {
        let received = send_outbound(route.listener_port, impostor, secret);
        if *name == "genuine" {
            assert_eq!(received, secret, "the genuine checkout gets the request");
        } else {
            assert!(
                received.is_empty(),
                "{name}: received {} bytes",
                received.len()
            );
        }
    }
    let log = envoy.log();
    for reason in [
        "wrong_server",
        "not_registered",
        "certificate_",
        "unknown_destination",
    ] {
        assert!(log.contains(reason), "no {reason} refusal logged:\n{log}");
    }

    // Inbound: a registered client is echoed; others fail the handshake.
    let wait = Duration::from_secs(2);
    let through = |identity: Option<&Workload>| {
        tls_round_trip(
            envoy.inbound_port,
            identity.map(|w| (w.cert_pem.as_str(), w.key_pem.as_str())),
            b"ping",
            wait,
            dir.path(),
        )
        .expect("openssl s_client")
        .received
    };
    assert_eq!(through(Some(&frontend)), b"ping");
    assert!(through(Some(&unregistered)).is_empty());
    assert!(through(None).is_empty());
    let refused_before = envoy.counter("ssl.fail_verify_error");
    assert!(
        refused_before >= 5,
        "refusals counted by Envoy: {refused_before}"
    );

    // Revoked: the next handshake fails.
    let mut revoked = registered;
    revoked[0].revoked = true;
    write_registry(&registry_path, &revoked);
    thread::sleep(Duration::from_millis(200));
    assert!(through(Some(&frontend)).is_empty(), "a revoked client");
    assert!(envoy.log().contains("revoked"));
    write_registry(&registry_path, &registered);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(through(Some(&frontend)), b"ping", "registered again");

    // Stale: the agent stopped verifying; every peer is refused, until it
    // verifies again.
    drop(heartbeat);
    thread::sleep(Duration::from_millis(2000));
    assert!(
        through(Some(&frontend)).is_empty(),
        "a stale registry admits nobody"
    );
    assert!(envoy.log().contains("registry_stale"));
    let _heartbeat = Heartbeat::start(registry_path.clone());
    thread::sleep(Duration::from_millis(400));
    assert_eq!(through(Some(&frontend)), b"ping", "fresh again");

    // Missing: the same.
    std::fs::remove_file(&registry_path).expect("remove");
    thread::sleep(Duration::from_millis(200));
    assert!(
        through(Some(&frontend)).is_empty(),
        "no registry file admits nobody"
    );
    assert!(envoy.log().contains("registry_unreadable"));
}

#[test]
fn envoy_refuses_a_bad_validator_configuration() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().expect("dir");
    let frontend = workload(&mesh, "shop", "frontend", 0);
    let echo = echo_server().expect("echo");
    let bad = config(Path::new("relative/registry"), &mesh);
    let spec = EnvoySpec {
        config: &bad,
        server: &frontend,
        client: &frontend,
        echo_port: echo.port,
        outbound: &[],
        pinned_inbound: None,
        concurrency: 1,
    };
    let Err(error) = ValidatorEnvoy::start(dir.path(), &spec) else {
        panic!("Envoy started with a refused validator configuration");
    };
    let message = format!("{error:#}");
    assert!(
        message.contains(
            "mazu-validator: configuration refused: validator configuration: registry_file"
        ),
        "{message}"
    );
}
