//! The two configurations under test, each a pair of real Envoy sidecars on
//! 127.0.0.1 in front of the same bench backend:
//!
//! - **baseline**: plain CA-based mTLS (`bench/envoy/baseline-*.yaml`):
//!   CA-signed certificates (the server's from files, the client's from a
//!   file-based SDS secret, so that it can be renewed), the client
//!   certificate checked against the CA, no filter;
//! - **Mazu**, the new data plane: the local mesh's node agents run with
//!   `--validator-config`, so the `ROOTCA` they serve over SDS is Mazu's
//!   handshake validator (`libmazu_validator.so`, docs/validator.md) in both
//!   sidecars; self-signed certificates carrying the token, from the same
//!   agents. The server sidecar is the mesh's own sidecar template
//!   (`e2e/envoy/sidecar.yaml` rendered by `mazu_e2e::envoy_config::render`
//!   with the mesh's plugin configuration, no outbound listeners): the
//!   validator in the handshake, then the Wasm filter inbound, its registry
//!   from the mesh's curator. The client sidecar
//!   (`bench/envoy/mazu-client.yaml`) has the baseline client's shape: the
//!   validator checks the server (the destination's identity, from Istio's
//!   SNI), no Wasm filter outbound.
//!
//! All four run with the mesh's Envoy flags (`--concurrency 1`). The client
//! templates turn TLS session resumption off, so that every new connection
//! is a full handshake in both configurations.

use core::time::Duration;
use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use mazu_e2e::envoy_config::{self, SidecarConfig, substitute};
use mazu_e2e::mesh::LocalMesh;
pub use mazu_e2e::mesh::filter_stats;
use mazu_e2e::process::Process;
use mazu_testkit::http;
use mazu_testkit::net::free_port;

use crate::certs;
use crate::cpu::{self, CpuWindow};

const BASELINE_SERVER: &str = include_str!("../envoy/baseline-server.yaml");
const BASELINE_CLIENT: &str = include_str!("../envoy/baseline-client.yaml");
const MAZU_CLIENT: &str = include_str!("../envoy/mazu-client.yaml");

/// Envoy's flags, the same for every sidecar of both configurations (and
/// the local mesh's).
pub const ENVOY_FLAGS: &[&str] = &[
    "--concurrency",
    "1",
    "--disable-hot-restart",
    "--log-level",
    "warn",
    "--component-log-level",
    "wasm:info",
];

/// Which configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Plain CA-based mTLS, no filter.
    Baseline,
    /// Self-signed certificates over SDS, the handshake validator both
    /// ways, the Mazu filter inbound.
    Mazu,
}

impl Kind {
    /// Its name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline",
            Kind::Mazu => "Mazu",
        }
    }
}

/// One Envoy sidecar process with its configuration file.
pub struct Sidecar {
    name: String,
    binary: PathBuf,
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`: where Envoy finds the validator
    /// module (Mazu only).
    modules: Option<PathBuf>,
    config_path: PathBuf,
    log_path: PathBuf,
    /// Its admin port.
    pub admin_port: u16,
    /// Filter directions to wait for (registry version) after a start.
    filter_directions: Vec<&'static str>,
    process: Option<Process>,
}

impl Sidecar {
    fn start(
        name: &str,
        binary: &Path,
        modules: Option<&Path>,
        config_path: PathBuf,
        admin_port: u16,
        filter_directions: Vec<&'static str>,
        registry_version: Option<i64>,
    ) -> Result<Sidecar> {
        let mut sidecar = Sidecar {
            name: name.to_owned(),
            binary: binary.to_owned(),
            modules: modules.map(Path::to_owned),
            log_path: config_path.with_extension("log"),
            config_path,
            admin_port,
            filter_directions,
            process: None,
        };
        sidecar.launch(registry_version)?;
        Ok(sidecar)
    }

    /// Starts Envoy; waits until it is live and, when `registry_version` is
    /// given, until every filter of it holds that registry version.
    fn launch(&mut self, registry_version: Option<i64>) -> Result<()> {
        let mut command = Command::new(&self.binary);
        if let Some(dir) = &self.modules {
            command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
        }
        command
            .arg("--config-path")
            .arg(&self.config_path)
            .args(ENVOY_FLAGS);
        let mut process = Process::spawn(&self.name, command, &self.log_path)?;
        let admin = self.admin_port;
        process.wait_until("live", Duration::from_secs(60), || {
            http::get_text(admin, "/ready").is_ok_and(|body| body.trim() == "LIVE")
        })?;
        if let Some(version) = registry_version {
            let directions = self.filter_directions.clone();
            process.wait_until("holding the registry", Duration::from_secs(30), || {
                filter_stats(admin).is_ok_and(|stats| {
                    directions.iter().all(|d| {
                        stats
                            .get(&format!("mazu.{d}.registry_version"))
                            .is_some_and(|v| *v >= version)
                    })
                })
            })?;
        }
        self.process = Some(process);
        Ok(())
    }

    /// Envoy's process id.
    pub fn pid(&self) -> Result<u32> {
        self.process
            .as_ref()
            .map(Process::pid)
            .ok_or_else(|| anyhow!("{} is not running", self.name))
    }

    /// One of Envoy's own counters (e.g. `listener.127.0.0.1_1234.ssl.handshake`);
    /// 0 if it does not exist.
    pub fn counter(&self, name: &str) -> Result<u64> {
        http::envoy_counter(self.admin_port, name)
    }

    /// Whether the `ROOTCA` Envoy holds (admin config dump) is the dynamic
    /// module certificate validator, as the agent serves it with
    /// `--validator-config`.
    pub fn holds_validator(&self) -> Result<bool> {
        let dump = http::get_text(
            self.admin_port,
            "/config_dump?resource=dynamic_active_secrets",
        )?;
        let dump: serde_json::Value = serde_json::from_str(&dump)?;
        Ok(dump["configs"].as_array().into_iter().flatten().any(|s| {
            s["name"] == "ROOTCA"
                && s["secret"]["validation_context"]["custom_validator_config"]["name"]
                    == "envoy.tls.cert_validator.dynamic_modules"
        }))
    }

    /// The serial numbers (hex, as Envoy writes them) of the certificates
    /// this sidecar presents (admin `/certs`).
    pub fn presented_serials(&self) -> Result<BTreeSet<String>> {
        let certs: serde_json::Value =
            serde_json::from_str(&http::get_text(self.admin_port, "/certs")?)?;
        Ok(certs["certificates"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten())
            .filter_map(|c| c["serial_number"].as_str())
            .map(str::to_ascii_lowercase)
            .collect())
    }

    /// Kills Envoy (SIGKILL) and starts it again with the same configuration:
    /// every cache in it (TLS sessions, the validator's and the filter's
    /// verdict and token caches) is gone.
    pub fn restart(&mut self, registry_version: Option<i64>) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        self.launch(registry_version)
    }
}

/// A client sidecar and a server sidecar of one configuration.
pub struct Pair {
    /// Which configuration.
    pub kind: Kind,
    /// The client sidecar's plain-text outbound port: load goes here.
    pub outbound_port: u16,
    /// The client sidecar (kept running).
    pub client: Sidecar,
    /// The server sidecar.
    pub server: Sidecar,
    /// The server sidecar's mTLS port.
    pub inbound_port: u16,
    /// The registry version the filters must hold (Mazu only).
    registry_version: Option<i64>,
    /// How the client gets a new certificate.
    client_renewal: ClientRenewal,
}

/// How a pair's client sidecar gets a new certificate while it runs.
enum ClientRenewal {
    /// A new CA-signed certificate in the client's file-based SDS secret
    /// (`certs::renew_client`); the count names the files.
    Pki { dir: PathBuf, issued: u32 },
    /// A new token for the mesh's service: its agent registers the new
    /// workload id and, once that has propagated, serves a new self-signed
    /// certificate over SDS, as when the kubelet rotates the token.
    Token { service: String },
}

impl Pair {
    /// The baseline pair in `dir` (certificates, configurations, logs).
    pub fn baseline(envoy: &Path, dir: &Path, backend_port: u16) -> Result<Pair> {
        std::fs::create_dir_all(dir)?;
        let cert_dir = dir.join("pki");
        certs::make_baseline_pki(&cert_dir)?;
        let (server_admin, inbound, client_admin, outbound) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let certs = cert_dir.display().to_string();
        let server_yaml = substitute(
            BASELINE_SERVER,
            &[
                ("ADMIN_PORT", server_admin.to_string()),
                ("INBOUND_PORT", inbound.to_string()),
                ("WORKLOAD_PORT", backend_port.to_string()),
                ("CERT_DIR", certs.clone()),
            ],
        )?;
        let client_yaml = substitute(
            BASELINE_CLIENT,
            &[
                ("ADMIN_PORT", client_admin.to_string()),
                ("OUTBOUND_PORT", outbound.to_string()),
                ("PEER_INBOUND_PORT", inbound.to_string()),
                ("CERT_DIR", certs),
            ],
        )?;
        let server_path = dir.join("baseline-server.yaml");
        let client_path = dir.join("baseline-client.yaml");
        std::fs::write(&server_path, server_yaml)?;
        std::fs::write(&client_path, client_yaml)?;
        let server = Sidecar::start(
            "envoy (baseline server)",
            envoy,
            None,
            server_path,
            server_admin,
            vec![],
            None,
        )?;
        let client = Sidecar::start(
            "envoy (baseline client)",
            envoy,
            None,
            client_path,
            client_admin,
            vec![],
            None,
        )?;
        let pair = Pair {
            kind: Kind::Baseline,
            outbound_port: outbound,
            client,
            server,
            inbound_port: inbound,
            registry_version: None,
            client_renewal: ClientRenewal::Pki {
                dir: cert_dir,
                issued: 0,
            },
        };
        pair.check_round_trip()?;
        Ok(pair)
    }

    /// The Mazu pair: the mesh's `checkout` sidecar configuration as the
    /// server (validator + filter inbound) and a `frontend` client sidecar
    /// (validator, no filter), with their agents' SDS, the mesh's curator and
    /// plugin configuration, in front of the bench backend. The mesh must
    /// run with the handshake validator (`MeshOptions::handshake_validator`),
    /// so that its agents serve it as `ROOTCA`.
    pub fn mazu(mesh: &LocalMesh, dir: &Path, backend_port: u16) -> Result<Pair> {
        std::fs::create_dir_all(dir)?;
        let client_spec = mesh.service("frontend")?;
        let server_spec = mesh.service("checkout")?;
        let (server_admin, inbound, client_admin, outbound) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let server_sds = server_spec.sds_socket();
        let server_yaml = envoy_config::render(&SidecarConfig {
            service: &server_spec.spec.name,
            namespace: &server_spec.spec.namespace,
            admin_port: server_admin,
            inbound_port: inbound,
            workload_port: backend_port,
            curator_port: mesh.curator_port(),
            curator_tls_pin: mesh.curator_tls_pin()?,
            sds_socket: &server_sds,
            filter_wasm: &mesh.binaries.filter_wasm,
            inbound_plugin_config: &mesh.plugin_config("inbound"),
            outbound_plugin_config: &mesh.plugin_config("outbound"),
            peers: &[],
            istio_san_matchers: false,
        })?;
        let client_yaml = substitute(
            MAZU_CLIENT,
            &[
                ("SERVICE", client_spec.spec.name.clone()),
                ("NAMESPACE", client_spec.spec.namespace.clone()),
                ("ADMIN_PORT", client_admin.to_string()),
                ("OUTBOUND_PORT", outbound.to_string()),
                ("PEER_INBOUND_PORT", inbound.to_string()),
                ("PEER_HOST", server_spec.spec.host()),
                ("SDS_SOCKET", client_spec.sds_socket().display().to_string()),
            ],
        )?;
        let server_path = dir.join("mazu-server.yaml");
        let client_path = dir.join("mazu-client.yaml");
        std::fs::write(&server_path, server_yaml)?;
        std::fs::write(&client_path, client_yaml)?;
        let version = mesh.registry_version()?;
        let envoy = &mesh.binaries.envoy;
        let modules = mesh.binaries.validator_module.parent();
        let server = Sidecar::start(
            "envoy (Mazu server)",
            envoy,
            modules,
            server_path,
            server_admin,
            vec!["inbound"],
            Some(version),
        )?;
        let client = Sidecar::start(
            "envoy (Mazu client)",
            envoy,
            modules,
            client_path,
            client_admin,
            vec![],
            None,
        )?;
        let pair = Pair {
            kind: Kind::Mazu,
            outbound_port: outbound,
            client,
            server,
            inbound_port: inbound,
            registry_version: Some(version),
            client_renewal: ClientRenewal::Token {
                service: client_spec.spec.name.clone(),
            },
        };
        for sidecar in [&pair.client, &pair.server] {
            if !sidecar.holds_validator()? {
                bail!(
                    "{}: its ROOTCA is not Mazu's handshake validator (is the mesh \
                     running with the validator?)",
                    sidecar.name
                );
            }
        }
        pair.wait_for_round_trip(Duration::from_secs(30))?;
        Ok(pair)
    }

    /// Restarts the server sidecar (cold caches), waiting for its filter's
    /// registry (Mazu).
    pub fn restart_server(&mut self) -> Result<()> {
        self.server.restart(self.registry_version)
    }

    /// Gives the client sidecar a new certificate (the server sidecar keeps
    /// running, its caches warm) and waits until the client presents it.
    /// `mesh` is the local mesh whose agent serves the Mazu client.
    pub fn renew_client_certificate(&mut self, mesh: &LocalMesh) -> Result<()> {
        let before = self.client.presented_serials()?;
        match &mut self.client_renewal {
            ClientRenewal::Pki { dir, issued } => {
                *issued += 1;
                certs::renew_client(dir, &format!("client-{issued}"))?;
            }
            ClientRenewal::Token { service } => {
                mesh.rotate_token(service)?;
            }
        }
        let start = Instant::now();
        let limit = Duration::from_secs(60);
        loop {
            let now = self.client.presented_serials()?;
            if now.difference(&before).next().is_some() {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!(
                    "{} pair: the client sidecar presents no new certificate after {limit:?}",
                    self.kind.label()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Retries [`Pair::check_round_trip`] until it passes or `limit`
    /// passes (SDS secrets may reach Envoy after it reports live).
    pub fn wait_for_round_trip(&self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.check_round_trip() {
                Ok(()) => return Ok(()),
                Err(error) if start.elapsed() > limit => {
                    return Err(error.context(format!("no round trip after {limit:?}")));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The CPU time of both sidecars now: the start of a measurement window.
    pub fn cpu_start(&self) -> Result<cpu::Start> {
        cpu::start(self.client.pid()?, self.server.pid()?)
    }

    /// The window from `start` to now, with `units` requests (or new
    /// connections) carried in it.
    pub fn cpu_finish(&self, start: cpu::Start, units: u64) -> Result<CpuWindow> {
        start.finish(self.client.pid()?, self.server.pid()?, units)
    }

    /// The server sidecar's inbound TLS counters now: (handshakes, of which
    /// resumed sessions).
    pub fn server_handshakes(&self) -> Result<(u64, u64)> {
        let prefix = format!("listener.127.0.0.1_{}.ssl", self.inbound_port);
        Ok((
            self.server.counter(&format!("{prefix}.handshake"))?,
            self.server.counter(&format!("{prefix}.session_reused"))?,
        ))
    }

    /// One request through the pair must come back with the 1 KiB body.
    pub fn check_round_trip(&self) -> Result<()> {
        let (status, _) = one_request(self.outbound_port)?;
        if status != 200 {
            bail!(
                "{} pair: a request through the sidecars got status {status}",
                self.kind.label()
            );
        }
        Ok(())
    }
}

/// One `GET /` on a new connection to `port` (`connection: close`): the
/// status and the time from `connect` to the end of the response.
pub fn one_request(port: u16) -> Result<(u16, Duration)> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, elapsed))
}
