//! The local mesh: the real key curator, and for each service a node agent,
//! an Envoy sidecar running the Mazu filter inbound and outbound, and a small
//! backend, all as processes on 127.0.0.1, in one working directory.
//!
//! Start order matters: the curator first, then every agent (which registers
//! its workload and then serves SDS), then the Envoys (which wait for their
//! certificates over SDS), and finally a wait until every filter holds the
//! curator's current registry. Everything is stopped when the mesh is
//! dropped (sidecars before the curator).

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use mazu_dev_issuer::TokenRequest;
use mazu_service::tls::SpkiPin;
use mazu_testkit::fixtures::{self, Mesh as TokenAuthority};
use mazu_testkit::http::{self, Endpoint};
use mazu_testkit::net::free_port;
use sha2::{Digest as _, Sha256};

use crate::backend::{Backend, CallResult, Greeter, http_get};
use crate::binaries::Binaries;
use crate::envoy_config::{self, OutboundPeer, SidecarConfig};
use crate::istio_sidecar::{self, TcpPorts};
use crate::liar::LyingCurator;
use crate::process::Process;

/// The SPIFFE trust domain of the local mesh.
pub const TRUST_DOMAIN: &str = fixtures::TRUST_DOMAIN;
/// The audience the mesh's tokens carry: this test deployment's own (the
/// shared "mazu" is refused by the curator and the filter).
pub const AUDIENCE: &str = fixtures::AUDIENCE;

/// One service of the mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its name (also its service account).
    pub name: String,
    /// Its Kubernetes namespace.
    pub namespace: String,
}

impl ServiceSpec {
    /// Service `name` in `namespace`, running as service account `name`.
    pub fn new(name: &str, namespace: &str) -> Self {
        ServiceSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// Its Kubernetes Service host name.
    pub fn host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }

    /// Its SPIFFE ID.
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{TRUST_DOMAIN}/ns/{}/sa/{}",
            self.namespace, self.name
        )
    }
}

/// How the mesh is laid out.
#[derive(Clone, Debug)]
pub struct MeshOptions {
    /// The services; each may call every other one.
    pub services: Vec<ServiceSpec>,
    /// How often the filters poll the curator, milliseconds.
    pub refresh_interval_ms: u64,
    /// Registry capacity (slots) of the curator's development CRS.
    pub capacity: u32,
    /// Lifetime of the tokens the mesh's issuer mints, seconds.
    pub token_lifetime_secs: u64,
    /// Working directory to use (kept); a temporary one (removed) if `None`.
    pub dir: Option<PathBuf>,
    /// Put a [`LyingCurator`] between the agents and sidecars and the real
    /// curator (it relays honestly until told to lie).
    pub lying_curator: bool,
    /// The agents' `--propagation-delay-ms`; default 2.5 refresh intervals.
    pub propagation_delay_ms: Option<u64>,
    /// The agents' `--release-delay-ms`; default 4 refresh intervals.
    pub release_delay_ms: Option<u64>,
    /// More flags for the curator (e.g. `--expiry-grace-secs 5`), after
    /// the mesh's own.
    pub curator_args: Vec<String>,
    /// Outbound clusters as istiod renders them: a SAN matcher on the
    /// destination's SPIFFE ID beside `ROOTCA` (Envoy refuses that with the
    /// agent's pins-only `ROOTCA`: e2e `s23`).
    pub istio_san_matchers: bool,
    /// The agents serve `ROOTCA` as Mazu's handshake validator module
    /// (`--validator-config`) instead of the SPKI pins: every handshake is
    /// decided by the verdict, outbound against the destination's expected
    /// SPIFFE ID (e2e `s24`).
    pub handshake_validator: bool,
    /// Sidecars in istiod's shape (`e2e/envoy/istio-sidecar.yaml`): HTTP
    /// connection managers on both sides, the filter as WasmPlugins over
    /// ECDS without a `vm_id`, Istio's outbound clusters; needs
    /// `handshake_validator` (e2e `s26`).
    pub istio_sidecars: bool,
    /// AuthorizationPolicies of the Istio-shaped sidecars: service name →
    /// the `source.principals` it allows (e.g.
    /// `cluster.local/ns/shop/sa/frontend`); a service not listed has none.
    pub authorization: BTreeMap<String, Vec<String>>,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            services: vec![
                ServiceSpec::new("frontend", "shop"),
                ServiceSpec::new("checkout", "shop"),
            ],
            refresh_interval_ms: 1000,
            capacity: 16,
            token_lifetime_secs: 3600,
            dir: None,
            lying_curator: false,
            propagation_delay_ms: None,
            release_delay_ms: None,
            curator_args: Vec::new(),
            istio_san_matchers: false,
            handshake_validator: false,
            istio_sidecars: false,
            authorization: BTreeMap::new(),
        }
    }
}

/// How a call or a connection attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The request reached the backend and its answer came back.
    Allowed,
    /// The mesh closed the connection.
    Denied {
        /// Which check closed it, e.g. `checkout inbound`, or `tls` when the
        /// handshake itself failed.
        by: String,
        /// The reason, e.g. `not_registered` (the filter's deny reason).
        reason: String,
    },
}

impl Verdict {
    /// Whether it was allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }

    /// The deny reason, if denied.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Allowed => None,
            Verdict::Denied { reason, .. } => Some(reason),
        }
    }
}

/// The deny reason of a peer refused in the TLS handshake because its key
/// is not one of the live registered keys the agent pins in `ROOTCA`.
pub const KEY_NOT_PINNED: &str = "tls_key_not_registered";

/// How many witnesses the mesh runs, and the quorum everyone requires.
pub const WITNESSES: usize = 2;

/// How often the curator has its newest checkpoint cosigned again, so that
/// the witnessed time stays recent while nothing is registered.
pub const WITNESS_REFRESH_SECS: u64 = 1;

/// How old (from the witnessed time) a filter's registry may get before it
/// counts as stale.
pub const MAX_STALENESS_SECS: u64 = 10;

/// A running witness (`mazu-witness`) with a fixed port and keys the mesh
/// made, so that the curator, agents and filters can be configured with its
/// verifier key and the curator with its TLS pin before it starts (it needs
/// the curator's key to start). It serves TLS; the curator pins its key.
struct WitnessNode {
    binary: PathBuf,
    dir: PathBuf,
    name: String,
    port: u16,
    vkey: String,
    tls_pin: SpkiPin,
    process: Option<Process>,
}

impl WitnessNode {
    fn new(binary: &Path, dir: PathBuf, index: usize) -> Result<WitnessNode> {
        std::fs::create_dir_all(&dir)?;
        let name = format!("witness-{index}.mesh.local");
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        std::fs::write(dir.join("witness.key"), fixtures::hex(&secret))?;
        let vkey = mazu_log::CosignatureSigner::new(&name, &secret)
            .map_err(|e| anyhow!("witness key: {e}"))?
            .verifier()
            .to_vkey();
        // Its TLS key, made here so that the curator can pin it before the
        // witness first starts.
        let tls = mazu_service::tls::load_server_tls(&dir.join("tls.key"), true, None, None)
            .map_err(|e| anyhow!("witness TLS key: {e}"))?;
        Ok(WitnessNode {
            binary: binary.to_owned(),
            dir,
            name,
            port: free_port()?,
            vkey,
            tls_pin: tls.tls.pin(),
            process: None,
        })
    }

    /// The curator's `--witness` value: TLS pinned to its key.
    fn curator_arg(&self) -> String {
        format!(
            "https://127.0.0.1:{}={};tls-pin={}",
            self.port, self.vkey, self.tls_pin
        )
    }

    fn start(&mut self, curator_vkey: &str) -> Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .args(["--name", &self.name, "--log", curator_vkey])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--tls-key")
            .arg(self.dir.join("tls.key"))
            .env("RUST_LOG", "info");
        let mut process = Process::spawn(
            &format!("mazu-witness ({})", self.name),
            command,
            &self.dir.join("witness.log"),
        )?;
        let endpoint = Endpoint::pinned(self.port, self.tls_pin);
        process.wait_until("listening", Duration::from_secs(30), || {
            endpoint
                .get("/healthz")
                .is_ok_and(|(status, _)| status == 200)
        })?;
        self.process = Some(process);
        Ok(())
    }
}

/// A running key curator with a fixed port (so sidecars find it again after
/// a restart) and a data directory that survives restarts.
struct CuratorNode {
    binary: PathBuf,
    dir: PathBuf,
    capacity: u32,
    port: u16,
    process: Option<Process>,
    /// Its checkpoint verifier key (generated on first start, kept in the
    /// data directory), which the filters pin.
    checkpoint_key: String,
    /// The pin of its TLS key (generated on first start, kept in the data
    /// directory), which agents and sidecars pin.
    tls_pin: Option<SpkiPin>,
    /// `URL=VKEY;tls-pin=PIN` of each witness it submits checkpoints to.
    witnesses: Vec<String>,
    /// More flags, after the ones above ([`MeshOptions::curator_args`]).
    extra_args: Vec<String>,
}

impl CuratorNode {
    /// How the harness reaches it: TLS to its pinned key, as agents do.
    fn endpoint(&self) -> Result<Endpoint> {
        let pin = self
            .tls_pin
            .ok_or_else(|| anyhow!("the curator has not started yet"))?;
        Ok(Endpoint::pinned(self.port, pin))
    }

    fn start(&mut self) -> Result<()> {
        let addr_file = self.dir.join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut command = Command::new(&self.binary);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--dev-crs")
            .arg("--capacity")
            .arg(self.capacity.to_string())
            .arg("--issuer")
            .arg(format!(
                "{}={};namespaces=*",
                mazu_dev_issuer::DEFAULT_ISSUER_URL,
                self.dir.join("jwks.json").display()
            ))
            .args(["--audience", AUDIENCE, "--trust-domain", TRUST_DOMAIN])
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--tls-pin-file")
            .arg(self.dir.join("tls.pin"))
            .arg("--witness-quorum")
            .arg(self.witnesses.len().to_string())
            .arg("--witness-refresh-secs")
            .arg(WITNESS_REFRESH_SECS.to_string())
            .env("RUST_LOG", "info");
        for witness in &self.witnesses {
            command.arg("--witness").arg(witness);
        }
        command.args(&self.extra_args);
        let mut process = Process::spawn("mazu-curator", command, &self.dir.join("curator.log"))?;
        process.wait_until("listening", Duration::from_secs(30), || addr_file.is_file())?;
        let addr = std::fs::read_to_string(&addr_file)?;
        self.port = addr
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("bad address file: {addr}"))?;
        let pin = std::fs::read_to_string(self.dir.join("tls.pin"))?;
        self.tls_pin = Some(
            pin.parse()
                .map_err(|e| anyhow!("the curator's TLS pin {pin:?}: {e}"))?,
        );
        let endpoint = self.endpoint()?;
        process.wait_until("ready", Duration::from_secs(60), || {
            endpoint
                .get("/readyz")
                .is_ok_and(|(status, _)| status == 200)
        })?;
        self.checkpoint_key = endpoint.get_text("/v1/checkpoint/key")?.trim().to_owned();
        self.process = Some(process);
        Ok(())
    }

    /// Rewrites the (stopped) curator's log: `edit` gets every entry in log
    /// order and may reorder, drop or replace them; the curator replays the
    /// result as its own on the next start.
    fn rewrite_log(&self, edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Result<()> {
        mazu_testkit::curator_log::rewrite_log(&self.dir.join("data"), edit)
    }
}

/// One service: its backend, node agent and sidecar.
pub struct Sidecar {
    /// What it is.
    pub spec: ServiceSpec,
    /// Its working directory (token, agent state, SDS socket, Envoy config and logs).
    pub dir: PathBuf,
    /// The sidecar's mTLS port.
    pub inbound_port: u16,
    /// The sidecar's admin port.
    pub admin_port: u16,
    /// Plain-text ports to reach each peer through the sidecar.
    pub outbound: BTreeMap<String, u16>,
    /// Envoy's outbound cluster for each peer (`peer-<name>`, or istiod's
    /// `outbound|PORT||HOST`).
    pub outbound_clusters: BTreeMap<String, String>,
    /// In Istio's shape: plain-text ports to reach each peer's TCP workload.
    pub outbound_tcp: BTreeMap<String, u16>,
    /// In Istio's shape: the TCP workload (server-first).
    pub greeter: Option<Greeter>,
    // Declared in stop order: Envoy, then the agent, then the backend.
    envoy: Option<Process>,
    agent: Process,
    backend: Backend,
}

impl Sidecar {
    /// The token file the agent watches.
    pub fn token_path(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("agent-state")
    }

    /// Where the agent writes the certificate and key it serves.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The agent's SDS socket.
    pub fn sds_socket(&self) -> PathBuf {
        self.dir.join("sds.sock")
    }

    /// The agent's `status.json`, once it has registered.
    pub fn agent_status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.state_dir().join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The workload id the agent has registered and serves (lowercase hex).
    pub fn registered_id(&self) -> Option<String> {
        let status = self.agent_status()?;
        status["id"].as_str().map(str::to_owned)
    }

    /// The certificate (PEM) and key (PKCS#8 PEM) the agent serves.
    pub fn served_identity(&self) -> Result<(String, String)> {
        let cert = std::fs::read_to_string(self.cert_dir().join("cert.pem"))?;
        let key = std::fs::read_to_string(self.cert_dir().join("key.pem"))?;
        Ok((cert, key))
    }

    /// The token the agent currently reads.
    pub fn token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.token_path())?
            .trim()
            .to_owned())
    }

    /// The filter's counters and gauges in this sidecar (`/stats`, names
    /// without the `wasmcustom.` prefix).
    pub fn filter_stats(&self) -> Result<BTreeMap<String, i64>> {
        filter_stats(self.admin_port)
    }

    /// One of Envoy's own counters (e.g.
    /// `cluster.mazu-curator.ssl.fail_verify_cert_hash`); 0 if not there.
    pub fn envoy_counter(&self, name: &str) -> Result<u64> {
        http::envoy_counter(self.admin_port, name)
    }

    /// The SPKI pins (base64 SHA-256) Envoy holds in its `ROOTCA`
    /// validation context, from the admin config dump: the keys its TLS
    /// handshakes accept, as the agent derived them from the witnessed log.
    pub fn handshake_pins(&self) -> Result<BTreeSet<String>> {
        let dump = http::get_text(
            self.admin_port,
            "/config_dump?resource=dynamic_active_secrets",
        )?;
        let dump: serde_json::Value = serde_json::from_str(&dump)?;
        let pins = dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|secret| secret["name"] == "ROOTCA")
            .flat_map(|secret| {
                secret["secret"]["validation_context"]["verify_certificate_spki"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|pin| pin.as_str().map(str::to_owned))
            .collect();
        Ok(pins)
    }

    /// With the handshake validator: the keys (base64 SHA-256 of the SPKI)
    /// of the live registrations in the registry file the agent wrote, if
    /// Envoy holds the validator's `ROOTCA` (empty otherwise).
    pub fn validator_keys(&self) -> Result<BTreeSet<String>> {
        use base64ct::{Base64, Encoding as _};
        let dump = http::get_text(
            self.admin_port,
            "/config_dump?resource=dynamic_active_secrets",
        )?;
        let dump: serde_json::Value = serde_json::from_str(&dump)?;
        let validator_served = dump["configs"].as_array().into_iter().flatten().any(|s| {
            s["name"] == "ROOTCA"
                && s["secret"]["validation_context"]["custom_validator_config"]["name"]
                    == "envoy.tls.cert_validator.dynamic_modules"
        });
        let Some(file) = std::fs::read(self.dir.join("registry"))
            .ok()
            .filter(|_| validator_served)
            .and_then(|bytes| mazu_validator::RegistryFile::decode(&bytes).ok())
        else {
            return Ok(BTreeSet::new());
        };
        let now = fixtures::unix_now();
        Ok(file
            .registry
            .entries()
            .iter()
            .filter(|entry| !entry.revoked && entry.token_expiry > now)
            .map(|entry| Base64::encode_string(entry.spki_hash.as_bytes()))
            .collect())
    }

    /// Envoy's TLS handshake failures because the peer's key is not pinned
    /// (or it showed no certificate), on this sidecar's inbound listener
    /// (`peer`: `None`) or its outbound cluster to `peer`.
    pub fn handshake_refusals(&self, peer: Option<&str>) -> Result<u64> {
        let prefix = match peer {
            None => format!("listener.127.0.0.1_{}.ssl.", self.inbound_port),
            Some(peer) => format!(
                "cluster.{}.ssl.",
                self.outbound_clusters
                    .get(peer)
                    .ok_or_else(|| anyhow!("no outbound cluster for {peer}"))?
            ),
        };
        let mut total = 0;
        for counter in [
            "fail_verify_cert_hash",
            "fail_verify_no_cert",
            "fail_verify_san",
            // The handshake validator's refusals.
            "fail_verify_error",
        ] {
            total += self.envoy_counter(&format!("{prefix}{counter}"))?;
        }
        Ok(total)
    }

    /// How many curator answers this sidecar refused because the log's
    /// evidence did not hold (a checkpoint without the witness quorum or
    /// with a bad signature, a rollback or fork, records that do not give
    /// the witnessed root). Its inbound and outbound filters share one
    /// registry copy, fetched by whichever holds the lease, so this is the
    /// sum over both directions.
    pub fn checkpoint_refusals(&self) -> Result<i64> {
        // The filter names these refusals `checkpoint_*`, `records_*` and
        // `state_*` (its other fetch failures are transport and size
        // problems).
        let stats = self.filter_stats()?;
        Ok(["inbound", "outbound"]
            .iter()
            .map(|dir| {
                let prefix = format!("mazu.{dir}.registry_fetch_failures.");
                stats
                    .iter()
                    .filter_map(|(name, value)| {
                        let kind = name.strip_prefix(&prefix)?;
                        ["checkpoint_", "records_", "state_"]
                            .iter()
                            .any(|refusal| kind.starts_with(refusal))
                            .then_some(*value)
                    })
                    .sum::<i64>()
            })
            .sum())
    }

    /// The workload's own port (its backend, in plain text).
    pub fn workload_port(&self) -> u16 {
        self.backend.port
    }

    /// The sidecar Envoy's process id.
    pub fn envoy_pid(&self) -> Option<u32> {
        self.envoy.as_ref().map(Process::pid)
    }

    /// Whether Envoy holds `cert_pem` (by serial number, from admin `/certs`).
    pub fn envoy_serves(&self, cert_pem: &str) -> Result<bool> {
        let serial = serial_hex(cert_pem)?;
        let certs = http::get_text(self.admin_port, "/certs")?;
        Ok(certs
            .to_ascii_lowercase()
            .contains(&format!("\"{serial}\"")))
    }

    /// The Envoy log so far.
    pub fn envoy_log(&self) -> String {
        self.envoy
            .as_ref()
            .map(|envoy| envoy.log_tail(200))
            .unwrap_or_default()
    }

    /// The agent log so far.
    pub fn agent_log(&self) -> String {
        self.agent.log_tail(200)
    }
}

/// The whole local mesh.
pub struct LocalMesh {
    // Sidecars stop before the front, the front before the curator, the
    // curator before its witnesses.
    services: Vec<Sidecar>,
    liar: Option<LyingCurator>,
    curator: CuratorNode,
    witnesses: Vec<WitnessNode>,
    /// The development token issuer (the mesh's stand-in for the Kubernetes
    /// service-account issuer), with the fixtures that build certificates.
    pub tokens: TokenAuthority,
    /// The programs run.
    pub binaries: Binaries,
    options: MeshOptions,
    /// In Istio's shape: each service's mTLS port for its TCP workload.
    inbound_tcp_ports: BTreeMap<String, u16>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl LocalMesh {
    /// Starts the mesh and waits until every filter holds the registry.
    pub fn start(options: MeshOptions) -> Result<LocalMesh> {
        if options.istio_sidecars && !options.handshake_validator {
            // istiod's outbound SAN matchers beside the pins are NACKed (s23).
            bail!("istio_sidecars needs handshake_validator");
        }
        let binaries = Binaries::locate()?;
        let (dir, temp) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new().prefix("mazu-mesh-").tempdir()?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let tokens = TokenAuthority::new();
        let curator_dir = dir.join("curator");
        std::fs::create_dir_all(&curator_dir)?;
        std::fs::write(curator_dir.join("jwks.json"), tokens.jwks_json())?;
        let mut witnesses = (0..WITNESSES)
            .map(|i| WitnessNode::new(&binaries.witness, dir.join(format!("witness-{i}")), i))
            .collect::<Result<Vec<_>>>()?;
        let mut curator = CuratorNode {
            binary: binaries.curator.clone(),
            dir: curator_dir,
            capacity: options.capacity,
            port: 0,
            process: None,
            checkpoint_key: String::new(),
            tls_pin: None,
            witnesses: witnesses.iter().map(WitnessNode::curator_arg).collect(),
            extra_args: options.curator_args.clone(),
        };
        curator.start()?;
        // The witnesses learn the curator's key from it; until they run,
        // the curator retries and registrations wait.
        for witness in &mut witnesses {
            witness.start(&curator.checkpoint_key)?;
        }
        let liar = if options.lying_curator {
            Some(LyingCurator::start(
                curator.port,
                &curator.dir.join("data"),
            )?)
        } else {
            None
        };
        let mut mesh = LocalMesh {
            services: Vec::new(),
            liar,
            curator,
            witnesses,
            tokens,
            binaries,
            options: options.clone(),
            inbound_tcp_ports: BTreeMap::new(),
            dir,
            _temp: temp,
        };
        let names: Vec<String> = options.services.iter().map(|s| s.name.clone()).collect();
        let inbound_ports = names
            .iter()
            .map(|name| Ok((name.clone(), free_port()?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        if options.istio_sidecars {
            for name in &names {
                mesh.inbound_tcp_ports.insert(name.clone(), free_port()?);
            }
        }
        // Agents first, all at once: registering is the slow part.
        let mut pending = Vec::new();
        for spec in &options.services {
            pending.push(mesh.start_agent(spec, inbound_ports[&spec.name])?);
        }
        for (spec, sidecar) in options.services.iter().zip(pending) {
            let peers: Vec<&ServiceSpec> = options
                .services
                .iter()
                .filter(|other| other.name != spec.name)
                .collect();
            let sidecar = mesh.finish_sidecar(sidecar, &peers, &inbound_ports)?;
            mesh.services.push(sidecar);
        }
        mesh.wait_for_registry(Duration::from_secs(30))?;
        Ok(mesh)
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The real curator's port (HTTPS).
    pub fn curator_port(&self) -> u16 {
        self.curator.port
    }

    /// The pin of the curator's TLS key, which agents, sidecars and the
    /// lying front (holding the curator's keys) share.
    pub fn curator_tls_pin(&self) -> Result<SpkiPin> {
        self.curator
            .tls_pin
            .ok_or_else(|| anyhow!("the curator has not started yet"))
    }

    /// The port agents and sidecars use as the curator: the lying front's
    /// when there is one, else the real curator's.
    pub fn front_port(&self) -> u16 {
        self.liar
            .as_ref()
            .map_or(self.curator.port, LyingCurator::port)
    }

    /// The lying front, if the mesh runs one.
    pub fn liar(&self) -> Result<&LyingCurator> {
        self.liar
            .as_ref()
            .ok_or_else(|| anyhow!("this mesh runs no lying curator"))
    }

    /// The witnesses' verifier keys.
    pub fn witness_keys(&self) -> Vec<String> {
        self.witnesses.iter().map(|w| w.vkey.clone()).collect()
    }

    /// The services, in start order.
    pub fn services(&self) -> &[Sidecar] {
        &self.services
    }

    /// The sidecar of service `name`.
    pub fn service(&self, name: &str) -> Result<&Sidecar> {
        self.services
            .iter()
            .find(|s| s.spec.name == name)
            .ok_or_else(|| anyhow!("no service {name} in the mesh"))
    }

    /// The refresh interval the filters use.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.options.refresh_interval_ms)
    }

    /// A fresh token for `spec`'s service account from the mesh's issuer.
    pub fn mint_token(&self, spec: &ServiceSpec) -> Result<String> {
        let mut request =
            TokenRequest::new(&spec.namespace, &spec.name).issued_at(fixtures::unix_now());
        request.lifetime = self.options.token_lifetime_secs;
        self.tokens.issuer.mint(&request).context("minting a token")
    }

    /// Writes a token the way the kubelet does: the new file replaces the
    /// old one atomically.
    fn write_token(path: &Path, token: &str) -> Result<()> {
        let temp = path.with_extension("tmp");
        std::fs::write(&temp, token)?;
        std::fs::rename(&temp, path)?;
        Ok(())
    }

    fn start_agent(&self, spec: &ServiceSpec, inbound_port: u16) -> Result<PendingSidecar> {
        let dir = self.dir.join(&spec.name);
        std::fs::create_dir_all(&dir)?;
        let token = self.mint_token(spec)?;
        let token_path = dir.join("token");
        Self::write_token(&token_path, &token)?;
        let socket = dir.join("sds.sock");
        let _ = std::fs::remove_file(&socket);
        let mut command = Command::new(&self.binaries.agent);
        command
            .arg("run")
            .arg("--curator")
            .arg(format!("https://127.0.0.1:{}", self.front_port()))
            .arg("--curator-tls-pin")
            .arg(self.curator_tls_pin()?.to_string())
            .arg("--witness-quorum")
            .arg(WITNESSES.to_string())
            .arg("--token-file")
            .arg(&token_path)
            .arg("--state-dir")
            .arg(dir.join("agent-state"))
            .arg("--cert-dir")
            .arg(dir.join("certs"))
            .arg("--sds-socket")
            .arg(&socket)
            .args(["--trust-domain", TRUST_DOMAIN])
            .args(["--poll-interval-ms", "200"])
            // A rotated certificate is shown to peers only once every
            // filter has had time to poll the registry that holds it.
            .arg("--propagation-delay-ms")
            .arg(
                self.options
                    .propagation_delay_ms
                    .unwrap_or(self.options.refresh_interval_ms * 5 / 2)
                    .to_string(),
            )
            // Peers' pooled connections made with a replaced certificate
            // drain this long before its registration is released.
            .arg("--release-delay-ms")
            .arg(
                self.options
                    .release_delay_ms
                    .unwrap_or(self.options.refresh_interval_ms * 4)
                    .to_string(),
            )
            // The handshake pins follow the log as often as the filters do.
            .arg("--peer-refresh-ms")
            .arg(self.options.refresh_interval_ms.to_string())
            .env("RUST_LOG", "info");
        for witness in self.witness_keys() {
            command.arg("--witness").arg(witness);
        }
        if self.options.handshake_validator {
            let config = dir.join("validator.json");
            std::fs::write(&config, self.validator_config(&dir.join("registry"))?)?;
            command.arg("--validator-config").arg(config);
        }
        let agent = Process::spawn(
            &format!("mazu-agent ({})", spec.name),
            command,
            &dir.join("agent.log"),
        )?;
        Ok(PendingSidecar {
            spec: spec.clone(),
            dir,
            agent,
            expected_id: workload_id_hex(&token),
            inbound_port,
        })
    }

    fn finish_sidecar(
        &self,
        mut pending: PendingSidecar,
        peers: &[&ServiceSpec],
        inbound_ports: &BTreeMap<String, u16>,
    ) -> Result<Sidecar> {
        let status_path = pending.dir.join("agent-state/status.json");
        let socket = pending.dir.join("sds.sock");
        let expected = pending.expected_id.clone();
        pending
            .agent
            .wait_until("registered", Duration::from_secs(60), || {
                socket.exists()
                    && std::fs::read_to_string(&status_path)
                        .ok()
                        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                        .is_some_and(|status| status["id"].as_str() == Some(expected.as_str()))
            })?;
        let backend = Backend::start(&pending.spec.name)?;
        let admin_port = free_port()?;
        let mut outbound = BTreeMap::new();
        let mut outbound_clusters = BTreeMap::new();
        let mut outbound_peers = Vec::new();
        for peer in peers {
            let port = free_port()?;
            outbound.insert(peer.name.clone(), port);
            outbound_peers.push(OutboundPeer {
                name: peer.name.clone(),
                outbound_port: port,
                peer_inbound_port: *inbound_ports
                    .get(&peer.name)
                    .ok_or_else(|| anyhow!("no inbound port for {}", peer.name))?,
                spiffe_id: peer.spiffe_id(),
                host: peer.host(),
            });
        }
        // In Istio's shape every service also has a TCP Service port: a
        // server-first workload behind tcp_proxy.
        let mut outbound_tcp = BTreeMap::new();
        let mut tcp_peers = Vec::new();
        let greeter = if self.options.istio_sidecars {
            for peer in &outbound_peers {
                let port = free_port()?;
                outbound_tcp.insert(peer.name.clone(), port);
                tcp_peers.push(OutboundPeer {
                    outbound_port: port,
                    peer_inbound_port: self.inbound_tcp_port(&peer.name)?,
                    ..peer.clone()
                });
            }
            Some(Greeter::start()?)
        } else {
            None
        };
        for peer in &outbound_peers {
            let cluster = if self.options.istio_sidecars {
                istio_sidecar::outbound_cluster(peer)
            } else {
                format!("peer-{}", peer.name)
            };
            outbound_clusters.insert(peer.name.clone(), cluster);
        }
        let sidecar_config = SidecarConfig {
            service: &pending.spec.name,
            namespace: &pending.spec.namespace,
            admin_port,
            inbound_port: pending.inbound_port,
            workload_port: backend.port,
            curator_port: self.front_port(),
            curator_tls_pin: self.curator_tls_pin()?,
            sds_socket: &socket,
            filter_wasm: &self.binaries.filter_wasm,
            inbound_plugin_config: &self.plugin_config("inbound"),
            outbound_plugin_config: &self.plugin_config("outbound"),
            peers: &outbound_peers,
            istio_san_matchers: self.options.istio_san_matchers,
        };
        let yaml = if self.options.istio_sidecars {
            let rendered = istio_sidecar::render(
                &sidecar_config,
                &TcpPorts {
                    workload_port: greeter.as_ref().map_or(0, |g| g.port),
                    inbound_port: self.inbound_tcp_port(&pending.spec.name)?,
                    peers: &tcp_peers,
                },
                self.options
                    .authorization
                    .get(&pending.spec.name)
                    .map(Vec::as_slice),
                &pending.dir,
            )?;
            // ECDS files are read when Envoy starts (and watched).
            std::fs::write(&rendered.ecds_inbound_path, &rendered.ecds_inbound)?;
            std::fs::write(&rendered.ecds_outbound_path, &rendered.ecds_outbound)?;
            rendered.bootstrap
        } else {
            envoy_config::render(&sidecar_config)?
        };
        let config_path = pending.dir.join("envoy.yaml");
        std::fs::write(&config_path, yaml)?;
        let mut command = self.binaries.envoy_command();
        command.arg("--config-path").arg(&config_path).args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--component-log-level",
            "wasm:info",
        ]);
        let mut envoy = Process::spawn(
            &format!("envoy ({})", pending.spec.name),
            command,
            &pending.dir.join("envoy.log"),
        )?;
        envoy.wait_until("live", Duration::from_secs(60), || {
            http::get_text(admin_port, "/ready").is_ok_and(|body| body.trim() == "LIVE")
        })?;
        Ok(Sidecar {
            spec: pending.spec,
            dir: pending.dir,
            inbound_port: pending.inbound_port,
            admin_port,
            outbound,
            outbound_clusters,
            outbound_tcp,
            greeter,
            envoy: Some(envoy),
            agent: pending.agent,
            backend,
        })
    }

    /// In Istio's shape: `service`'s mTLS port for its TCP workload.
    pub fn inbound_tcp_port(&self, service: &str) -> Result<u16> {
        self.inbound_tcp_ports
            .get(service)
            .copied()
            .ok_or_else(|| anyhow!("{service} has no TCP port (not in Istio's shape?)"))
    }

    /// The handshake validator's configuration for an agent writing its
    /// registry to `registry_file`: the filters' trust section, and every
    /// service's host with its SPIFFE ID as the expected server.
    pub fn validator_config(&self, registry_file: &Path) -> Result<String> {
        let plugin: serde_json::Value = serde_json::from_str(&self.plugin_config("inbound"))?;
        let destinations: serde_json::Map<String, serde_json::Value> = self
            .options
            .services
            .iter()
            .map(|spec| (spec.host(), serde_json::json!([spec.spiffe_id()])))
            .collect();
        Ok(serde_json::json!({
            "registry_file": std::path::absolute(registry_file)?,
            "max_registry_age_ms": 60_000,
            "trust": plugin["trust"],
            "destinations": destinations
        })
        .to_string())
    }

    /// The filter's configuration for `direction` (see docs/filter.md).
    pub fn plugin_config(&self, direction: &str) -> String {
        serde_json::json!({
            "direction": direction,
            "curator": {
                "cluster": "mazu-curator",
                "authority": "mazu-curator",
                "refresh_interval_ms": self.options.refresh_interval_ms,
                "timeout_ms": 1000,
                // The registry is derived from log records under a checkpoint
                // signed by the curator and cosigned by a witness quorum
                // (docs/protocol.md).
                "checkpoint_key": self.curator.checkpoint_key,
                "witnesses": self.witness_keys(),
                "witness_quorum": WITNESSES
            },
            "trust": {
                "trust_domain": TRUST_DOMAIN,
                "audience": AUDIENCE,
                "issuers": [{
                    "issuer": self.tokens.issuer.issuer_url(),
                    "namespaces": ["*"],
                    "jwks": serde_json::from_str::<serde_json::Value>(&self.tokens.jwks_json())
                        .unwrap_or_default()
                }]
            },
            // Keep deciding from the last registry if the curator goes away
            // (scenario 9); registrations carry their own expiry.
            "when_stale": "enforce_last_known",
            "max_staleness_secs": MAX_STALENESS_SECS
        })
        .to_string()
    }

    /// Adds service `spec` while the mesh runs, able to call `peers`.
    pub fn add_service(&mut self, spec: ServiceSpec, peers: &[&str]) -> Result<&Sidecar> {
        let mut ports = BTreeMap::new();
        let mut peer_specs = Vec::new();
        for name in peers {
            let sidecar = self.service(name)?;
            ports.insert(sidecar.spec.name.clone(), sidecar.inbound_port);
            peer_specs.push(sidecar.spec.clone());
        }
        let inbound_port = free_port()?;
        if self.options.istio_sidecars {
            self.inbound_tcp_ports
                .insert(spec.name.clone(), free_port()?);
        }
        let pending = self.start_agent(&spec, inbound_port)?;
        let peer_refs: Vec<&ServiceSpec> = peer_specs.iter().collect();
        let sidecar = self.finish_sidecar(pending, &peer_refs, &ports)?;
        self.services.push(sidecar);
        self.wait_for_registry(Duration::from_secs(30))?;
        self.services
            .last()
            .ok_or_else(|| anyhow!("the service was just added"))
    }

    /// The size of the curator's newest witnessed checkpoint: the registry
    /// version a filter can hold.
    pub fn registry_version(&self) -> Result<i64> {
        let note = self.curator.endpoint()?.get_text("/v1/checkpoint")?;
        note.lines()
            .nth(1)
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| anyhow!("no size in the checkpoint: {note}"))
    }

    /// The curator's registry, as served (JSON).
    pub fn registry_json(&self) -> Result<String> {
        self.curator
            .endpoint()?
            .get_text("/v1/registry?format=json")
    }

    /// The curator's public parameters, as served.
    pub fn public_params(&self) -> Result<String> {
        self.curator.endpoint()?.get_text("/v1/params")
    }

    /// Waits until every filter (inbound and outbound) holds the curator's
    /// current registry version.
    pub fn wait_for_registry(&self, limit: Duration) -> Result<()> {
        let version = self.registry_version()?;
        let start = Instant::now();
        for sidecar in &self.services {
            loop {
                let stats = sidecar.filter_stats()?;
                let held = |direction: &str| {
                    stats
                        .get(&format!("mazu.{direction}.registry_version"))
                        .copied()
                        .unwrap_or(-1)
                };
                let outbound_ok = sidecar.outbound.is_empty() || held("outbound") >= version;
                if held("inbound") >= version && outbound_ok {
                    break;
                }
                if start.elapsed() > limit {
                    bail!(
                        "{}'s filters hold registry {}/{} after {limit:?}, curator has {version}:\n{}",
                        sidecar.spec.name,
                        held("inbound"),
                        held("outbound"),
                        sidecar.envoy_log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.wait_for_pins(limit.saturating_sub(start.elapsed()))
    }

    /// The keys every sidecar's handshake should accept now: the live,
    /// unrevoked, unexpired entries of the curator's registry (base64
    /// SHA-256 of the SPKI, as Envoy's `verify_certificate_spki` has them).
    pub fn live_pins(&self) -> Result<BTreeSet<String>> {
        use base64ct::{Base64, Encoding as _};
        let registry: serde_json::Value = serde_json::from_str(&self.registry_json()?)?;
        let now = fixtures::unix_now();
        let mut pins = BTreeSet::new();
        for entry in registry["entries"].as_array().into_iter().flatten() {
            let live = entry["revoked"] == false
                && entry["token_expiry"].as_u64().is_some_and(|exp| exp > now);
            let Some(hex) = entry["spki_hash"].as_str().filter(|_| live) else {
                continue;
            };
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
                .collect::<core::result::Result<Vec<u8>, _>>()
                .map_err(|e| anyhow!("spki_hash {hex}: {e}"))?;
            pins.insert(Base64::encode_string(&bytes));
        }
        Ok(pins)
    }

    /// Waits until every sidecar's Envoy holds (at least) the pins of every
    /// live registration: its agent followed the log and pushed `ROOTCA`.
    /// With the handshake validator: until every agent's registry file
    /// holds every live key and its Envoy has the validator's `ROOTCA`.
    pub fn wait_for_pins(&self, limit: Duration) -> Result<()> {
        let expected = self.live_pins()?;
        let start = Instant::now();
        for sidecar in &self.services {
            loop {
                let held = if self.options.handshake_validator {
                    sidecar.validator_keys()?
                } else {
                    sidecar.handshake_pins()?
                };
                if held.is_superset(&expected) {
                    break;
                }
                if start.elapsed() > limit {
                    bail!(
                        "{}'s Envoy pins {} of the {} live keys after {limit:?}:\n{}",
                        sidecar.spec.name,
                        held.intersection(&expected).count(),
                        expected.len(),
                        sidecar.agent_log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Kills witness `index` (SIGKILL): with a quorum of all witnesses, no
    /// checkpoint can be witnessed until it is back.
    pub fn kill_witness(&mut self, index: usize) -> Result<()> {
        let witness = self
            .witnesses
            .get_mut(index)
            .ok_or_else(|| anyhow!("no witness {index}"))?;
        if let Some(mut process) = witness.process.take() {
            process.kill();
        }
        Ok(())
    }

    /// Starts witness `index` again on the same port with the same state.
    pub fn restart_witness(&mut self, index: usize) -> Result<()> {
        self.kill_witness(index)?;
        let curator_key = self.curator.checkpoint_key.clone();
        self.witnesses
            .get_mut(index)
            .ok_or_else(|| anyhow!("no witness {index}"))?
            .start(&curator_key)
    }

    /// How many forks each witness has refused and recorded evidence of
    /// (files in its `evidence/` directory), by witness name.
    pub fn witness_fork_records(&self) -> Result<Vec<(String, usize)>> {
        self.witnesses
            .iter()
            .map(|w| {
                let dir = w.dir.join("evidence");
                let count = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries.count(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(e.into()),
                };
                Ok((w.name.clone(), count))
            })
            .collect()
    }

    /// The real curator's log records (`GET /v1/log/records`), all of them.
    pub fn curator_records(&self) -> Result<Vec<mazu_log::LeafRecord>> {
        let mut records = Vec::new();
        loop {
            let (status, body) = self
                .curator
                .endpoint()?
                .get(&format!("/v1/log/records?start={}", records.len()))?;
            if status != 200 {
                bail!("GET /v1/log/records answered {status}");
            }
            let page = mazu_log::record::decode_records(&body)
                .map_err(|e| anyhow!("the curator's records: {e}"))?;
            if page.is_empty() {
                return Ok(records);
            }
            records.extend(page);
        }
    }

    /// The digest of the CRS the real curator serves (lowercase hex).
    pub fn crs_digest_hex(&self) -> Result<String> {
        let (status, crs) = self.curator.endpoint()?.get("/v1/crs")?;
        if status != 200 {
            bail!("GET /v1/crs answered {status}");
        }
        let crs = mazu_rbe::Crs::from_bytes(&crs).map_err(|e| anyhow!("the CRS: {e}"))?;
        Ok(fixtures::hex(&crs.digest()))
    }

    /// The real curator's Prometheus metrics (`GET /metrics`, text).
    pub fn curator_metrics(&self) -> Result<String> {
        self.curator.endpoint()?.get_text("/metrics")
    }

    /// The real curator's process id, while it runs.
    pub fn curator_pid(&self) -> Option<u32> {
        self.curator.process.as_ref().map(Process::pid)
    }

    /// Runs `mazu-audit check` against the real curator, as an auditor
    /// outside the mesh would: pinning its TLS key, CRS digest and
    /// checkpoint key, with the mesh's issuer, audience, trust domain and
    /// witness quorum. Exit 0 means the whole log re-verified and matches
    /// what the curator serves (docs/audit.md).
    pub fn audit_check(&self) -> Result<std::process::Output> {
        let mut command = Command::new(Binaries::audit()?);
        command
            .arg("check")
            .arg("--curator")
            .arg(format!("https://127.0.0.1:{}", self.curator.port))
            .arg("--curator-tls-pin")
            .arg(self.curator_tls_pin()?.to_string())
            .arg("--crs-digest")
            .arg(self.crs_digest_hex()?)
            .arg("--issuer")
            .arg(format!(
                "{}={};namespaces=*",
                mazu_dev_issuer::DEFAULT_ISSUER_URL,
                self.curator.dir.join("jwks.json").display()
            ))
            .args(["--audience", AUDIENCE, "--trust-domain", TRUST_DOMAIN])
            .arg("--checkpoint-key")
            .arg(&self.curator.checkpoint_key)
            .arg("--witness-quorum")
            .arg(WITNESSES.to_string())
            .env("RUST_LOG", "warn");
        for witness in self.witness_keys() {
            command.arg("--witness").arg(witness);
        }
        command.output().context("running mazu-audit check")
    }

    /// Kills `service`'s Envoy (SIGKILL): its inbound port is free for
    /// whoever binds it next (an impostor, in the tests).
    pub fn kill_envoy(&mut self, service: &str) -> Result<()> {
        let sidecar = self
            .services
            .iter_mut()
            .find(|s| s.spec.name == service)
            .ok_or_else(|| anyhow!("no service {service}"))?;
        if let Some(mut envoy) = sidecar.envoy.take() {
            envoy.kill();
        }
        Ok(())
    }

    /// Kills the curator (SIGKILL).
    pub fn kill_curator(&mut self) {
        if let Some(mut process) = self.curator.process.take() {
            process.kill();
        }
    }

    /// Starts the curator again on the same port with the same data.
    pub fn restart_curator(&mut self) -> Result<()> {
        self.kill_curator();
        self.curator.start()?;
        // Ready means replayed; the first checkpoint with the witness quorum
        // comes one cosigning round later, and callers read the log size
        // from it at once.
        let endpoint = self.curator.endpoint()?;
        let start = Instant::now();
        while !endpoint
            .get("/v1/checkpoint")
            .is_ok_and(|(status, _)| status == 200)
        {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("the restarted curator has no witnessed checkpoint after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Makes the curator lie: stops it, rewrites its log with `edit` (see
    /// `CuratorNode::rewrite_log`) and starts it again on the same port, with
    /// the same checkpoint key. It then signs checkpoints of the rewritten
    /// log, which no filter that saw the old one may accept.
    pub fn rewrite_curator_log(&mut self, edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Result<()> {
        self.kill_curator();
        self.curator.rewrite_log(edit)?;
        self.curator.start()
    }

    /// The curator's checkpoint verifier key, which the filters pin.
    pub fn checkpoint_key(&self) -> &str {
        &self.curator.checkpoint_key
    }

    /// Whether the curator answers `/healthz`.
    pub fn curator_is_up(&self) -> bool {
        self.curator
            .endpoint()
            .is_ok_and(|e| e.get("/healthz").is_ok())
    }

    /// Gives `service` a new token, as the kubelet does when it rotates the
    /// projected token; returns the new token's workload id (hex).
    pub fn rotate_token(&self, service: &str) -> Result<String> {
        let sidecar = self.service(service)?;
        let token = self.mint_token(&sidecar.spec)?;
        Self::write_token(&sidecar.token_path(), &token)?;
        Ok(workload_id_hex(&token))
    }

    /// `from`'s workload calls `to` through both sidecars; which check (if
    /// any) closed the connection, from the filters' deny counters.
    pub fn call(&self, from: &str, to: &str) -> Result<Verdict> {
        let source = self.service(from)?;
        let target = self.service(to)?;
        let port = *source
            .outbound
            .get(to)
            .ok_or_else(|| anyhow!("{from} has no outbound listener for {to}"))?;
        let before = (source.filter_stats()?, target.filter_stats()?);
        let refused_before = (
            source.handshake_refusals(Some(to))?,
            target.handshake_refusals(None)?,
        );
        let result = http_get(port, to, Duration::from_secs(10))?;
        match result {
            CallResult::Answered { status: 200, body }
                if body.contains(&format!("hello from {to}")) =>
            {
                Ok(Verdict::Allowed)
            }
            other => {
                let after = (source.filter_stats()?, target.filter_stats()?);
                let mut found = denials(&before.0, &after.0, "outbound")
                    .map(|reason| (format!("{from} outbound"), reason));
                if found.is_none() {
                    found = denials(&before.1, &after.1, "inbound")
                        .map(|reason| (format!("{to} inbound"), reason));
                }
                // Refused in the TLS handshake: the peer's key is not among
                // the pins (`ROOTCA`) of the side that refused it.
                if found.is_none() && source.handshake_refusals(Some(to))? > refused_before.0 {
                    found = Some((format!("{from} outbound tls"), KEY_NOT_PINNED.to_owned()));
                }
                if found.is_none() && target.handshake_refusals(None)? > refused_before.1 {
                    found = Some((format!("{to} inbound tls"), KEY_NOT_PINNED.to_owned()));
                }
                let (by, reason) = found.unwrap_or_else(|| {
                    ("mesh".to_owned(), format!("no filter verdict ({other:?})"))
                });
                Ok(Verdict::Denied { by, reason })
            }
        }
    }

    /// Connects straight to `target`'s sidecar with mTLS, presenting
    /// `identity` (certificate PEM, key PEM) or no certificate, as an
    /// attacker on the network would, and sends one HTTP request.
    pub fn connect_as(&self, target: &str, identity: Option<(&str, &str)>) -> Result<Verdict> {
        let sidecar = self.service(target)?;
        let before = sidecar.filter_stats()?;
        let request = format!("GET / HTTP/1.1\r\nhost: {target}\r\nconnection: close\r\n\r\n");
        let outcome = mazu_testkit::net::tls_round_trip(
            sidecar.inbound_port,
            identity,
            request.as_bytes(),
            Duration::from_secs(5),
            &self.dir,
        )?;
        let received = String::from_utf8_lossy(&outcome.received);
        if received.contains(&format!("hello from {target}")) {
            return Ok(Verdict::Allowed);
        }
        let after = sidecar.filter_stats()?;
        if let Some(reason) = denials(&before, &after, "inbound") {
            return Ok(Verdict::Denied {
                by: format!("{target} inbound"),
                reason,
            });
        }
        let stderr = outcome.stderr.to_ascii_lowercase();
        let reason = if stderr.contains("certificate required") {
            "tls_certificate_required".to_owned()
        } else if stderr.contains("bad certificate hash value") {
            // Envoy's `verify_certificate_spki` refused the client's key.
            KEY_NOT_PINNED.to_owned()
        } else {
            format!(
                "closed before the filter decided: {}",
                outcome.stderr.trim()
            )
        };
        Ok(Verdict::Denied {
            by: "tls".to_owned(),
            reason,
        })
    }

    /// `mazu-agent <subcommand>` as `service`'s holder: its agent's state
    /// (its keys) and the real curator, pinned. The caller adds the rest.
    pub fn holder_command(&self, subcommand: &str, service: &str) -> Result<Command> {
        let mut command = Command::new(&self.binaries.agent);
        command
            .arg(subcommand)
            .arg("--state-dir")
            .arg(self.service(service)?.state_dir())
            .arg("--curator")
            .arg(format!("https://127.0.0.1:{}", self.curator_port()))
            .arg("--curator-tls-pin")
            .arg(self.curator_tls_pin()?.to_string());
        Ok(command)
    }

    /// Runs `mazu-agent encrypt` of `message` to `id_hex` against the curator
    /// on `curator_port` (the real one, or the lying front), the way a
    /// sender outside the mesh would: pinning the real curator's CRS digest
    /// and checkpoint key, requiring the mesh's witness quorum. The output
    /// (stdout: the ciphertext) as the process gave it.
    pub fn encrypt_to(
        &self,
        id_hex: &str,
        message: &[u8],
        curator_port: u16,
    ) -> Result<std::process::Output> {
        let crs_digest = self.crs_digest_hex()?;
        let input = self
            .dir
            .join(format!("message-{:08x}", rand::random::<u32>()));
        std::fs::write(&input, message)?;
        let mut command = std::process::Command::new(&self.binaries.agent);
        command
            .arg("encrypt")
            .arg("--curator")
            .arg(format!("https://127.0.0.1:{curator_port}"))
            .arg("--curator-tls-pin")
            .arg(self.curator_tls_pin()?.to_string())
            .arg("--crs-sha256")
            .arg(crs_digest)
            .arg("--checkpoint-key")
            .arg(&self.curator.checkpoint_key)
            .arg("--witness-quorum")
            .arg(WITNESSES.to_string())
            .arg("--id")
            .arg(id_hex)
            .arg("--in")
            .arg(&input)
            .env("RUST_LOG", "info");
        for witness in self.witness_keys() {
            command.arg("--witness").arg(witness);
        }
        let output = command.output().context("running mazu-agent encrypt")?;
        let _ = std::fs::remove_file(&input);
        Ok(output)
    }
}

/// A service whose agent was started but not yet registered.
struct PendingSidecar {
    spec: ServiceSpec,
    dir: PathBuf,
    agent: Process,
    expected_id: String,
    inbound_port: u16,
}

/// The deny reason whose counter grew between two stat readings of one
/// direction, if any.
fn denials(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
    direction: &str,
) -> Option<String> {
    let prefix = format!("mazu.{direction}.denied.");
    after.iter().find_map(|(name, value)| {
        let reason = name.strip_prefix(&prefix)?;
        (*value > before.get(name).copied().unwrap_or(0)).then(|| reason.to_owned())
    })
}

/// The Mazu filter's counters and gauges of the Envoy whose admin port is
/// `admin_port` (`/stats`, names without the `wasmcustom.` prefix).
pub fn filter_stats(admin_port: u16) -> Result<BTreeMap<String, i64>> {
    let body = http::get_text(admin_port, "/stats?filter=mazu\\.")?;
    Ok(body
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            let name = name.strip_prefix("wasmcustom.").unwrap_or(name);
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

/// The serial number of a PEM certificate, lowercase hex.
pub fn serial_hex(cert_pem: &str) -> Result<String> {
    use der::Decode as _;
    let (_, der) =
        der::pem::decode_vec(cert_pem.as_bytes()).map_err(|e| anyhow!("certificate PEM: {e}"))?;
    let certificate = x509_cert::Certificate::from_der(&der)?;
    Ok(fixtures::hex(
        certificate.tbs_certificate.serial_number.as_bytes(),
    ))
}

/// The workload id of `token` (SHA-256 of the token as written), lowercase hex.
pub fn workload_id_hex(token: &str) -> String {
    fixtures::hex(&Sha256::digest(token.as_bytes()))
}
