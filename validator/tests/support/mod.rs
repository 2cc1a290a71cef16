//! The harness of the validator's real-Envoy tests and benchmark: an Envoy
//! with the module on inbound listeners and outbound clusters, the registry
//! file written and kept fresh as the node agent does.

#![allow(dead_code, clippy::unwrap_used)] // each target uses a part of it

use base64ct::Encoding as _;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::thread;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use mazu_identity::{RegistryEntry, RegistrySnapshot};
use mazu_testkit::envoy;
use mazu_testkit::fixtures::{AUDIENCE, Mesh, TRUST_DOMAIN, Workload, WorkloadSpec};
use mazu_testkit::net::free_port;
use mazu_validator::RegistryFile;
use serde_json::json;

pub const CHECKOUT_HOST: &str = "checkout.shop.svc.cluster.local";

/// Where the module is: `$MAZU_VALIDATOR_MODULE`, else beside this test
/// binary (cargo builds the library's cdylib into `deps/` with the tests)
/// or in the profile directory above it (`cargo build -p mazu-validator`).
pub fn module_dir() -> Result<PathBuf> {
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

pub fn workload(mesh: &Mesh, namespace: &str, service_account: &str, slot: u32) -> Workload {
    let mut spec = WorkloadSpec::new(namespace, service_account);
    spec.slot = slot;
    // The certificate must not outlive its token.
    spec.certificate_lifetime = 3000;
    mesh.workload_from(&mesh.issuer, &spec)
}

/// Writes the registry file atomically, as the agent does.
pub fn write_registry(path: &Path, entries: &[RegistryEntry]) {
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
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(path: PathBuf) -> Heartbeat {
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

pub fn validator_context(config: &str) -> serde_json::Value {
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
pub struct Outbound {
    /// The plain listener the test connects to.
    pub listener_port: u16,
    /// The destination host in the SNI.
    pub host: &'static str,
    /// The upstream TLS server.
    pub upstream_port: u16,
}

/// What one Envoy runs.
pub struct EnvoySpec<'a> {
    /// The validator configuration (JSON).
    pub config: &'a str,
    /// The inbound listeners' certificate.
    pub server: &'a Workload,
    /// The outbound clusters' client certificate.
    pub client: &'a Workload,
    /// Where inbound `tcp_proxy` connects.
    pub echo_port: u16,
    /// Outbound routes.
    pub outbound: &'a [Outbound],
    /// A second inbound listener whose validation context is only this SPKI
    /// pin (the agent's `ROOTCA` without the validator): the baseline.
    pub pinned_inbound: Option<[u8; 32]>,
    /// Envoy's worker threads.
    pub concurrency: u32,
}

/// A running Envoy, killed on drop.
pub struct ValidatorEnvoy {
    child: Child,
    log_path: PathBuf,
    admin_port: u16,
    /// The inbound listener with the validator.
    pub inbound_port: u16,
    /// The inbound listener with the pin, if asked for.
    pub pinned_port: Option<u16>,
}

impl ValidatorEnvoy {
    /// Starts Envoy and waits until it is live.
    pub fn start(dir: &Path, spec: &EnvoySpec<'_>) -> Result<ValidatorEnvoy> {
        let admin_port = free_port()?;
        let inbound_port = free_port()?;
        let server_cert = tls_certificate(dir, "server", spec.server)?;
        let client_cert = tls_certificate(dir, "client", spec.client)?;
        let mut listeners = vec![inbound_listener(
            "inbound",
            inbound_port,
            &server_cert,
            validator_context(spec.config),
        )];
        let pinned_port = match spec.pinned_inbound {
            Some(pin) => {
                let port = free_port()?;
                let pin = base64ct::Base64::encode_string(&pin);
                listeners.push(inbound_listener(
                    "pinned",
                    port,
                    &server_cert,
                    json!({"verify_certificate_spki": [pin]}),
                ));
                Some(port)
            }
            None => None,
        };
        let (config, echo_port, outbound) = (spec.config, spec.echo_port, spec.outbound);
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
        let module_dir = module_dir()?;
        let mut child = envoy::spawn(&config_path, &log_path, spec.concurrency, |command| {
            command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", &module_dir);
        })?;
        envoy::wait_live(&mut child, admin_port, &log_path, Duration::from_secs(30))?;
        Ok(ValidatorEnvoy {
            child,
            log_path,
            admin_port,
            inbound_port,
            pinned_port,
        })
    }

    /// GETs an admin path.
    pub fn admin(&self, path: &str) -> Result<String> {
        mazu_testkit::http::get_text(self.admin_port, path)
    }

    /// The sum of the counters whose name ends with `suffix`.
    pub fn counter(&self, suffix: &str) -> i64 {
        self.admin("/stats")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(name, _)| name.ends_with(suffix))
            .filter_map(|(_, value)| value.trim().parse::<i64>().ok())
            .sum()
    }

    /// Envoy's log (its stderr, where the module writes too).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// An inbound mTLS listener (`require_client_certificate`) with
/// `validation`, whose `tcp_proxy` goes to the `echo` cluster.
fn inbound_listener(
    name: &str,
    port: u16,
    certificate: &serde_json::Value,
    validation: serde_json::Value,
) -> serde_json::Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": true,
                    "disable_stateless_session_resumption": true,
                    "common_tls_context": {
                        "tls_certificates": [certificate],
                        "validation_context": validation
                    }
                }
            },
            "filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": name, "cluster": "echo"
                }
            }]
        }]
    })
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

/// A validator configuration: the fixtures' issuer, checkout's expected
/// identity, a short registry age.
pub fn config(registry_file: &Path, mesh: &Mesh) -> String {
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
