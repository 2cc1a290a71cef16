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

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use mazu_identity::{RegistryEntry, RegistrySnapshot};
use mazu_validator::RegistryFile;
use mazu_wasm_tests::envoy::envoy_binary;
use mazu_wasm_tests::fixtures::{AUDIENCE, Mesh, TRUST_DOMAIN, Workload, WorkloadSpec};
use mazu_wasm_tests::net::{Impostor, echo_server, free_port, tls_round_trip};
use serde_json::json;

const CHECKOUT_HOST: &str = "checkout.shop.svc.cluster.local";
const CART_HOST: &str = "cart.shop.svc.cluster.local";

/// Where the module is: `$MAZU_VALIDATOR_MODULE`, else beside this test
/// binary (cargo builds the library's cdylib into `deps/` with the tests)
/// or in the profile directory above it (`cargo build -p mazu-validator`).
fn module_dir() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MAZU_VALIDATOR_MODULE") {
        let path = PathBuf::from(path);
        return path
            .parent()
            .map(Path::to_path_buf)
            .context("MAZU_VALIDATOR_MODULE has no directory");
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .find(|dir| dir.join("libmazu_validator.so").is_file())
        .map(Path::to_path_buf)
        .context("no libmazu_validator.so beside the test binary (cargo build -p mazu-validator)")
}

fn workload(mesh: &Mesh, namespace: &str, service_account: &str, slot: u32) -> Workload {
    let mut spec = WorkloadSpec::new(namespace, service_account);
    spec.slot = slot;
    // The certificate must not outlive its token.
    spec.certificate_lifetime = 3000;
    mesh.workload_from(&mesh.issuer, &spec)
}

/// Writes the registry file atomically, as the agent does.
fn write_registry(path: &Path, entries: &[RegistryEntry]) {
    let log_size = 2 * entries.len() as u64 + 2;
    let file = RegistryFile {
        log_size,
        registry: RegistrySnapshot::from_entries(log_size, entries.to_vec()).expect("entries"),
    };
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, file.encode()).expect("write the registry file");
    std::fs::rename(&temp, path).expect("rename the registry file");
}

/// Sets the file's modification time to now every 200 ms, as the agent does
/// after each verified checkpoint, until stopped.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(path: PathBuf) -> Heartbeat {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                if let Ok(file) = std::fs::File::options().append(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        Heartbeat {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn validator_context(config: &str) -> serde_json::Value {
    json!({
        "custom_validator_config": {
            "name": "envoy.tls.cert_validator.dynamic_modules",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.cert_validator.dynamic_modules.v3.DynamicModuleCertValidatorConfig",
                "dynamic_module_config": {"name": "mazu_validator"},
                "validator_name": "mazu",
                "validator_config": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config
                }
            }
        }
    })
}

fn tls_certificate(dir: &Path, name: &str, workload: &Workload) -> Result<serde_json::Value> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &workload.cert_pem)?;
    std::fs::write(&key, &workload.key_pem)?;
    Ok(json!({
        "certificate_chain": {"filename": cert},
        "private_key": {"filename": key}
    }))
}

/// One outbound route: a plain listener whose `tcp_proxy` connects over
/// mTLS (SNI `outbound_.8080_._.<host>`) to `upstream_port`.
struct Outbound {
    listener_port: u16,
    host: &'static str,
    upstream_port: u16,
}

struct ValidatorEnvoy {
    child: Child,
    log_path: PathBuf,
    admin_port: u16,
    inbound_port: u16,
}

impl ValidatorEnvoy {
    fn start(
        dir: &Path,
        config: &str,
        server: &Workload,
        client: &Workload,
        echo_port: u16,
        outbound: &[Outbound],
    ) -> Result<ValidatorEnvoy> {
        let admin_port = free_port()?;
        let inbound_port = free_port()?;
        let server_cert = tls_certificate(dir, "server", server)?;
        let client_cert = tls_certificate(dir, "client", client)?;
        let mut listeners = vec![json!({
            "name": "inbound",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": inbound_port}},
            "filter_chains": [{
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "disable_stateless_session_resumption": true,
                        "common_tls_context": {
                            "tls_certificates": [server_cert],
                            "validation_context": validator_context(config)
                        }
                    }
                },
                "filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "inbound", "cluster": "echo"
                    }
                }]
            }]
        })];
        let mut clusters = vec![json!({
            "name": "echo", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "echo", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": echo_port}}}}]}]}
        })];
        for (i, route) in outbound.iter().enumerate() {
            let name = format!("outbound-{i}");
            listeners.push(json!({
                "name": name,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": route.listener_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": name, "cluster": name
                    }
                }]}]
            }));
            clusters.push(json!({
                "name": name, "type": "STATIC", "connect_timeout": "2s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": route.upstream_port}}}}]}]},
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": format!("outbound_.8080_._.{}", route.host),
                        "max_session_keys": 0,
                        "common_tls_context": {
                            "tls_certificates": [client_cert.clone()],
                            "validation_context": validator_context(config)
                        }
                    }
                }
            }));
        }
        let bootstrap = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {"listeners": listeners, "clusters": clusters}
        });
        let config_path = dir.join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&bootstrap)?)?;
        let log_path = dir.join("envoy.log");
        let child = Command::new(envoy_binary()?)
            .arg("--config-path")
            .arg(&config_path)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "info",
            ])
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir()?)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log_path)?))
            .spawn()
            .context("cannot start envoy")?;
        let mut envoy = ValidatorEnvoy {
            child,
            log_path,
            admin_port,
            inbound_port,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = envoy.child.try_wait()? {
                bail!("envoy exited with {status}:\n{}", envoy.log());
            }
            if envoy
                .admin("/ready")
                .is_ok_and(|body| body.trim() == "LIVE")
            {
                return Ok(envoy);
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("envoy not ready:\n{}", envoy.log());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn admin(&self, path: &str) -> Result<String> {
        mazu_wasm_tests::http::get_text(self.admin_port, path)
    }

    /// The sum of the counters whose name ends with `suffix`.
    fn counter(&self, suffix: &str) -> i64 {
        self.admin("/stats")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(name, _)| name.ends_with(suffix))
            .filter_map(|(_, value)| value.trim().parse::<i64>().ok())
            .sum()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ValidatorEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- envoy log ---\n{}", self.log());
        }
    }
}

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

fn config(registry_file: &Path, mesh: &Mesh) -> String {
    json!({
        "registry_file": registry_file,
        "max_registry_age_ms": 1500,
        "recheck_interval_ms": 50,
        "trust": {
            "trust_domain": TRUST_DOMAIN,
            "audience": AUDIENCE,
            "issuers": [{
                "issuer": mazu_dev_issuer::DEFAULT_ISSUER_URL,
                "jwks": serde_json::from_str::<serde_json::Value>(&mesh.jwks_json()).expect("JWKS"),
                "namespaces": ["*"]
            }]
        },
        "destinations": {
            CHECKOUT_HOST: [format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/checkout")]
        }
    })
    .to_string()
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
    let plain_cert = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.path().join("plain.key"))
        .arg("-out")
        .arg(dir.path().join("plain.crt"))
        .args(["-days", "1", "-subj", "/CN=checkout.shop.svc.cluster.local"])
        .output()
        .expect("openssl req");
    assert!(plain_cert.status.success());
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
        &config,
        &checkout,
        &frontend,
        echo.port,
        &routes,
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
    let Err(error) = ValidatorEnvoy::start(dir.path(), &bad, &frontend, &frontend, echo.port, &[])
    else {
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
