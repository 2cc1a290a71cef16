//! Shared test helpers: the `mazu-agent` binary as a child process, tokens
//! from the development issuer written the way the kubelet writes them, and
//! a curator on a fixed port that can be stopped and started again (the
//! testkit harness's `Curator` picks its own port).

#![allow(dead_code, missing_docs)]

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use mazu_agent::state::Status;
use mazu_dev_issuer::TokenRequest;
use mazu_testkit::fixtures::{Mesh, TRUST_DOMAIN};

/// The agent binary cargo built for these tests.
pub const AGENT: &str = env!("CARGO_BIN_EXE_mazu-agent");

/// A fresh token for `ns/sa` (unique `jti`, so every call gives a new id).
pub fn mint(mesh: &Mesh, namespace: &str, service_account: &str) -> String {
    mint_with(mesh, namespace, service_account, |_| {})
}

/// A token with `edit` applied to the request.
pub fn mint_with(
    mesh: &Mesh,
    namespace: &str,
    service_account: &str,
    edit: impl FnOnce(&mut TokenRequest),
) -> String {
    let mut request = TokenRequest::new(namespace, service_account);
    request.jti = Some(format!("{:032x}", rand::random::<u128>()));
    edit(&mut request);
    mesh.issuer.mint(&request).expect("mint")
}

/// Hex SHA-256 of the token: the workload id.
/// A token expiry an hour from now, Unix seconds: what a front-runner that
/// does not hold the token guesses.
pub fn an_hour_from_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600
}

pub fn id_of(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Writes `token` to `path` the way the kubelet replaces a projected token:
/// a new file renamed over the old one, so a reader never sees half of it.
pub fn write_token(path: &Path, token: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token).expect("write token");
    std::fs::rename(&tmp, path).expect("rename token");
}

/// One agent's files in a fresh temporary directory: the token file (the
/// test writes it, as the kubelet would), the state directory and the
/// certificate directory (neither exists until the agent creates it).
pub struct AgentFiles {
    pub dir: tempfile::TempDir,
    pub token_file: PathBuf,
    pub state: PathBuf,
    pub certs: PathBuf,
}

impl AgentFiles {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        AgentFiles {
            token_file: dir.path().join("token"),
            state: dir.path().join("state"),
            certs: dir.path().join("certs"),
            dir,
        }
    }
}

/// A running `mazu-agent run`; killed on drop, its log printed if the test
/// failed.
pub struct AgentProcess {
    child: Child,
    log_path: PathBuf,
    pub state_dir: PathBuf,
}

impl AgentProcess {
    /// Starts `mazu-agent run --curator URL --token-file .. --state-dir ..`
    /// plus `extra` arguments, with fast polling and retries for tests.
    pub fn start(curator_url: &str, token_file: &Path, state_dir: &Path, extra: &[&str]) -> Self {
        let mut command = Command::new(AGENT);
        command
            .arg("run")
            .arg("--token-file")
            .arg(token_file)
            .arg("--state-dir")
            .arg(state_dir);
        Self::spawn(command, curator_url, state_dir, extra)
    }

    /// `command` (a subcommand and its own flags) with the curator, fast
    /// polling and retries for tests, and `extra`; stderr to a log file next
    /// to `state_dir`.
    fn spawn(mut command: Command, curator_url: &str, state_dir: &Path, extra: &[&str]) -> Self {
        let log_path = state_dir.with_extension(format!("log-{}", rand::random::<u32>()));
        let log = std::fs::File::create(&log_path).expect("agent log");
        let child = command
            .args(["--curator", curator_url])
            // An https:// curator comes with its --curator-tls-pin in `extra`.
            .args(
                curator_url
                    .starts_with("http://")
                    .then_some("--insecure-plain-http"),
            )
            .args(["--poll-interval-ms", "100", "--opening-refresh-ms", "300"])
            .args(["--backoff-initial-ms", "100", "--backoff-max-ms", "1000"])
            .args(["--propagation-delay-ms", "200", "--release-delay-ms", "300"])
            .args(
                (!extra.contains(&"--witness") && !extra.contains(&"--insecure-no-witness"))
                    .then_some("--insecure-no-witness"),
            )
            .args(extra)
            .env("RUST_LOG", "info,mazu_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start mazu-agent");
        AgentProcess {
            child,
            log_path,
            state_dir: state_dir.to_owned(),
        }
    }

    /// The agent's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The current `status.json`, if written.
    pub fn status(&self) -> Option<Status> {
        let bytes = std::fs::read(self.state_dir.join("status.json")).ok()?;
        Status::parse(&bytes).ok()
    }

    /// Waits until `status.json` satisfies `done`.
    pub fn wait_status(&mut self, limit: Duration, done: impl Fn(&Status) -> bool) -> Status {
        let start = Instant::now();
        loop {
            if let Some(status) = self.status()
                && done(&status)
            {
                return status;
            }
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("mazu-agent exited with {exit}:\n{}", self.log());
            }
            if start.elapsed() > limit {
                panic!(
                    "status.json not as expected after {limit:?}: {:?}\n{}",
                    self.status(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&mut self, limit: Duration, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!(
                    "mazu-agent exited with {exit} before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            if start.elapsed() > limit {
                panic!(
                    "no {needle:?} in the agent log after {limit:?}:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it is still running.
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM (to this child only, by pid) and waits for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("mazu-agent ignored SIGTERM:\n{}", self.log());
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- mazu-agent log ----\n{}\n---- end ----", self.log());
        }
    }
}

/// Runs `mazu-agent ARGS` to completion. A plain `http://` curator (the
/// tests' default) is reached with `--insecure-plain-http`, as the agent
/// requires.
pub fn agent_command(args: &[&str]) -> Output {
    let plain = args
        .windows(2)
        .any(|w| w[0] == "--curator" && w[1].starts_with("http://"))
        && !args.contains(&"--curator-tls-pin");
    Command::new(AGENT)
        .args(args)
        .args(plain.then_some("--insecure-plain-http"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run mazu-agent")
}

/// One HTTP/1.1 GET to 127.0.0.1:`port`: status and body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    mazu_testkit::http::get(port, path)
}

/// Every entry of the curator's log at `port` (`GET /v1/log`, paged).
pub fn log_entries(port: u16) -> Vec<mazu_curator::entry::LogEntry> {
    use base64ct::{Base64, Encoding as _};
    let mut out = Vec::new();
    loop {
        let (status, body) =
            http_get(port, &format!("/v1/log?start={}", out.len())).expect("GET /v1/log");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let page: mazu_curator::api::views::LogJson =
            serde_json::from_slice(&body).expect("log JSON");
        for item in &page.entries {
            let bytes = Base64::decode_vec(&item.entry).expect("base64");
            out.push(mazu_curator::entry::LogEntry::from_bytes(&bytes).expect("entry"));
        }
        if page.entries.is_empty() || out.len() as u64 >= page.size {
            return out;
        }
    }
}

/// The registry as the log defines it (first binding of an id wins), in the
/// JSON shape the tests read: `version` (log size) and `entries` with `id`,
/// `slot`, `spki_hash`, `revealed` and, once revoked, `revoked` (released
/// ids are left out).
pub fn registry(port: u16) -> serde_json::Value {
    use mazu_curator::entry::EntryBody;
    use sha2::Digest as _;
    let entries = log_entries(port);
    let mut ids: Vec<serde_json::Value> = Vec::new();
    for entry in &entries {
        let id = hex::encode(entry.id);
        match &entry.body {
            EntryBody::Bind { slot, tls_spki, .. } if !ids.iter().any(|e| e["id"] == id) => {
                ids.push(serde_json::json!({
                    "id": id,
                    "slot": slot,
                    "spki_hash": hex::encode(sha2::Sha256::digest(tls_spki)),
                    "revealed": false,
                }));
            }
            EntryBody::Reveal { .. } => {
                if let Some(e) = ids.iter_mut().find(|e| e["id"] == id) {
                    e["revealed"] = serde_json::Value::Bool(true);
                }
            }
            // A released id leaves the registry; a revoked one stays,
            // flagged.
            EntryBody::Release { .. } => ids.retain(|e| e["id"] != id),
            EntryBody::Revoke { .. } => {
                if let Some(e) = ids.iter_mut().find(|e| e["id"] == id) {
                    e["revoked"] = serde_json::Value::Bool(true);
                }
            }
            EntryBody::Bind { .. } => {}
        }
    }
    serde_json::json!({ "version": entries.len(), "entries": ids })
}

/// Whether the log at `port` holds a reveal of `id_hex`.
pub fn revealed(port: u16, id_hex: &str) -> bool {
    log_entries(port).iter().any(|e| {
        hex::encode(e.id) == id_hex
            && matches!(e.body, mazu_curator::entry::EntryBody::Reveal { .. })
    })
}

/// The registry entry of `id` (first binding), if any.
pub fn registry_entry(port: u16, id: &str) -> Option<serde_json::Value> {
    registry(port)["entries"]
        .as_array()?
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
}

/// Real `mazu-witness` servers, in process (their own runtime), for one
/// log; stopped on drop.
pub struct Witnesses {
    runtime: tokio::runtime::Runtime,
    dirs: Vec<tempfile::TempDir>,
    /// `(address, verifier key)` of each.
    pub servers: Vec<(core::net::SocketAddr, String)>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Witnesses {
    /// Starts `n` witnesses of the log signed by `log`.
    pub fn start(n: usize, log: &mazu_log::CheckpointVerifier) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut witnesses = Witnesses {
            runtime,
            dirs: Vec::new(),
            servers: Vec::new(),
            stops: Vec::new(),
        };
        for i in 0..n {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut config = mazu_witness::Config::new(
                &format!("w{i}.agent-tests.example"),
                vec![log.clone()],
                dir.path().to_path_buf(),
            );
            config.create_key = true;
            let server = witnesses
                .runtime
                .block_on(mazu_witness::Server::bind(config))
                .expect("witness");
            let addr = server.local_addr();
            let vkey = server.vkey();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            witnesses.runtime.spawn(server.run(async move {
                let _ = rx.await;
            }));
            witnesses.servers.push((addr, vkey));
            witnesses.stops.push(tx);
            witnesses.dirs.push(dir);
        }
        witnesses
    }

    /// A witness of `log` that is configured (key created, port chosen)
    /// but not running: `(config, address, verifier key)`; start it with
    /// [`Self::start_config`]. Its port is free until then.
    pub fn prepare(
        &mut self,
        log: &mazu_log::CheckpointVerifier,
    ) -> (mazu_witness::Config, core::net::SocketAddr, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = mazu_testkit::net::free_port().expect("port");
        let mut config = mazu_witness::Config::new(
            "late.agent-tests.example",
            vec![log.clone()],
            dir.path().to_path_buf(),
        );
        config.create_key = true;
        config.listen = core::net::SocketAddr::from(([127, 0, 0, 1], port));
        // Binding creates the key; dropping the server frees the port.
        let server = self
            .runtime
            .block_on(mazu_witness::Server::bind(config.clone()))
            .expect("witness");
        let (addr, vkey) = (server.local_addr(), server.vkey());
        drop(server);
        self.dirs.push(dir);
        (config, addr, vkey)
    }

    /// Starts a witness prepared with [`Self::prepare`].
    pub fn start_config(&mut self, config: mazu_witness::Config) {
        let server = self
            .runtime
            .block_on(mazu_witness::Server::bind(config))
            .expect("witness");
        let (addr, vkey) = (server.local_addr(), server.vkey());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.runtime.spawn(server.run(async move {
            let _ = rx.await;
        }));
        self.servers.push((addr, vkey));
        self.stops.push(tx);
    }

    /// The curator's flags: `--witness URL=VKEY` for each (these in-process
    /// witnesses serve plain HTTP, so `--insecure-plain-http-witness`; TLS
    /// witnesses are covered by the curator's and the e2e tests).
    pub fn curator_args(&self) -> Vec<String> {
        self.servers
            .iter()
            .flat_map(|(addr, vkey)| ["--witness".to_owned(), format!("http://{addr}={vkey}")])
            .chain(["--insecure-plain-http-witness".to_owned()])
            .collect()
    }

    /// The agent's flags: `--witness VKEY` for each.
    pub fn agent_args(&self) -> Vec<String> {
        self.servers
            .iter()
            .flat_map(|(_, vkey)| ["--witness".to_owned(), vkey.clone()])
            .collect()
    }
}

impl Drop for Witnesses {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// A curator on a port chosen by the test, with a data directory that
/// survives a stop, so it can be started after the agent, stopped, and
/// started again with the same log and CRS.
pub struct FixedCurator {
    child: Option<Child>,
    dir: tempfile::TempDir,
    issuer_arg: String,
    /// Flags added to every start (witnesses, checkpoint key).
    extra: Vec<String>,
    /// Serve TLS (its pin in the data directory) instead of plain HTTP.
    tls: bool,
    pub port: u16,
}

/// The curator the tests start by default: on a free port, without
/// witnesses (`--insecure-no-witness`; the agents get the same flag).
pub struct Curator;

impl Curator {
    /// Starts a curator for `mesh` on a free port.
    pub fn start(mesh: &Mesh) -> Result<FixedCurator> {
        let mut curator = FixedCurator::new(mesh, mazu_testkit::net::free_port()?)?;
        curator.start()?;
        Ok(curator)
    }
}

impl FixedCurator {
    /// Prepares (does not start) a curator for `mesh` on `port`.
    pub fn new(mesh: &Mesh, port: u16) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, mesh.jwks_json())?;
        Ok(FixedCurator {
            child: None,
            issuer_arg: format!(
                "{}={};namespaces=*",
                mesh.issuer.issuer_url(),
                jwks.display()
            ),
            extra: vec!["--insecure-no-witness".to_owned()],
            tls: false,
            dir,
            port,
        })
    }

    /// Prepares a curator that serves TLS, as deployed (the tests' default
    /// is plain HTTP, which these agent tests are not about).
    pub fn new_tls(mesh: &Mesh, port: u16) -> Result<Self> {
        let mut curator = Self::new(mesh, port)?;
        curator.tls = true;
        Ok(curator)
    }

    /// Where the curator writes the pin of its TLS key.
    fn pin_file(&self) -> PathBuf {
        self.dir.path().join("tls.pin")
    }

    /// The pin of its TLS key (after a start with TLS).
    pub fn tls_pin(&self) -> Result<mazu_service::tls::SpkiPin> {
        let text = std::fs::read_to_string(self.pin_file())?;
        text.parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.pin_file().display()))
    }

    /// How the harness reaches it (pinned TLS or plain HTTP).
    pub fn endpoint(&self) -> mazu_testkit::http::Endpoint {
        match self.tls_pin() {
            Ok(pin) if self.tls => mazu_testkit::http::Endpoint::pinned(self.port, pin),
            _ => mazu_testkit::http::Endpoint::plain(self.port),
        }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts it and waits until `/readyz` answers 200.
    pub fn start(&mut self) -> Result<()> {
        let binary = mazu_testkit::curator::curator_binary()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("curator.log"))?;
        let child = Command::new(&binary)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--dev-crs", "--capacity", "16"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--issuer", &self.issuer_arg])
            .args(["--audience", mazu_dev_issuer::DEV_AUDIENCE])
            .args(["--trust-domain", TRUST_DOMAIN])
            .args(&self.extra)
            .args(if self.tls {
                vec!["--tls-pin-file".into(), self.pin_file().into_os_string()]
            } else {
                vec!["--insecure-plain-http".into()]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("mazu-curator exited with {status}:\n{}", self.log());
            }
            if self.endpoint().get("/readyz").is_ok_and(|(s, _)| s == 200) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!("mazu-curator not ready after 60 s:\n{}", self.log())
    }

    /// Kills it (the data directory stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("curator.log")).unwrap_or_default()
    }
}

impl Drop for FixedCurator {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("---- mazu-curator log ----\n{}\n---- end ----", self.log());
        }
    }
}

/// SHA-256 (hex) of the SubjectPublicKeyInfo of the PEM certificate.
pub fn spki_hash_of_pem(pem: &str) -> String {
    use der::{Decode as _, Encode as _};
    use sha2::Digest as _;
    let (_, der) = der::pem::decode_vec(pem.as_bytes()).expect("PEM");
    let cert = x509_cert::Certificate::from_der(&der).expect("certificate");
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .expect("spki");
    hex::encode(sha2::Sha256::digest(spki))
}

/// Mode bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

impl AgentProcess {
    /// Starts `mazu-agent node --curator URL --pods-dir .. --state-root ..
    /// --socket-root ..` plus `extra`, with fast scans, polling and retries
    /// for tests. `state_dir` is the state root (its `status.json` does not
    /// exist: read `STATE_ROOT/<uid>/status.json`).
    pub fn start_node(
        curator_url: &str,
        pods_dir: &Path,
        state_root: &Path,
        socket_root: &Path,
        extra: &[&str],
    ) -> Self {
        let mut command = Command::new(AGENT);
        command
            .arg("node")
            .arg("--pods-dir")
            .arg(pods_dir)
            .arg("--state-root")
            .arg(state_root)
            .arg("--socket-root")
            .arg(socket_root)
            .args(["--scan-interval-ms", "200"]);
        Self::spawn(command, curator_url, state_root, extra)
    }
}

/// Writes `token` into a projected volume directory the way the kubelet's
/// atomic writer does: the file in a timestamped directory, `..data`
/// pointing at it, and `token -> ..data/token`; a rewrite swaps `..data`.
pub fn write_projected_token(volume_dir: &Path, token: &str) {
    std::fs::create_dir_all(volume_dir).expect("volume dir");
    let stamp = format!("..{:016x}", rand::random::<u64>());
    std::fs::create_dir(volume_dir.join(&stamp)).expect("timestamped dir");
    std::fs::write(volume_dir.join(&stamp).join("token"), token).expect("write token");
    let tmp = volume_dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).expect("symlink");
    std::fs::rename(&tmp, volume_dir.join("..data")).expect("swap ..data");
    let link = volume_dir.join("token");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/token", &link).expect("token symlink");
    }
}

/// A real Envoy with one TLS listener per SDS socket: listener `i` takes
/// `default` and `ROOTCA` from socket `i` (its own `sds-i` cluster: a static
/// HTTP/2 cluster with a pipe address, as Istio's `sds-grpc`) and proxies
/// to an echo backend. Killed on drop.
pub struct SdsEnvoy {
    child: Child,
    dir: tempfile::TempDir,
    pub admin_port: u16,
    pub listener_ports: Vec<u16>,
}

impl SdsEnvoy {
    /// Starts Envoy for `sockets`, with listeners on free ports that
    /// require a client certificate if `mutual`.
    pub fn start(sockets: &[PathBuf], echo_port: u16, mutual: bool) -> Self {
        use mazu_testkit::net::free_port;
        use serde_json::json;
        let admin_port = free_port().expect("port");
        let listener_ports: Vec<u16> = sockets.iter().map(|_| free_port().expect("port")).collect();
        let sds = |cluster: &str, name: &str| {
            json!({
                "name": name,
                "sds_config": {
                    "resource_api_version": "V3",
                    "initial_fetch_timeout": "30s",
                    "api_config_source": {
                        "api_type": "GRPC",
                        "transport_api_version": "V3",
                        "grpc_services": [{"envoy_grpc": {"cluster_name": cluster}}]
                    }
                }
            })
        };
        let mut listeners = Vec::new();
        let mut clusters = vec![json!({
            "name": "echo",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": "echo",
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": echo_port}
                }}}]}]
            }
        })];
        for (i, (socket, port)) in sockets.iter().zip(&listener_ports).enumerate() {
            let cluster = format!("sds-{i}");
            listeners.push(json!({
                "name": format!("pod-{i}"),
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "require_client_certificate": mutual,
                            "common_tls_context": {
                                "tls_certificate_sds_secret_configs": [sds(&cluster, "default")],
                                "validation_context_sds_secret_config": sds(&cluster, "ROOTCA")
                            }
                        }
                    },
                    "filters": [{
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                            "stat_prefix": format!("pod_{i}"),
                            "cluster": "echo"
                        }
                    }]
                }]
            }));
            clusters.push(json!({
                "name": cluster,
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "load_assignment": {
                    "cluster_name": cluster,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "pipe": {"path": socket.display().to_string()}
                    }}}]}]
                }
            }));
        }
        let config = json!({
            "node": {"id": "sidecar~127.0.0.1~node.shop~shop.svc.cluster.local", "cluster": "node.shop"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {"listeners": listeners, "clusters": clusters}
        });
        let binary = mazu_testkit::envoy::envoy_binary().expect("envoy binary");
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("envoy.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log");
        let child = Command::new(binary)
            .arg("--config-path")
            .arg(&config_path)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start envoy");
        SdsEnvoy {
            child,
            dir,
            admin_port,
            listener_ports,
        }
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Waits until every listener is active: each got both secrets over SDS.
    pub fn wait_listeners_active(&mut self, limit: Duration) {
        let name = "listener_manager.total_listeners_active";
        let want = self.listener_ports.len() as i64;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("envoy exited with {status}:\n{}", self.log());
            }
            let value = http_get(self.admin_port, &format!("/stats?filter={name}"))
                .ok()
                .filter(|(status, _)| *status == 200)
                .and_then(|(_, body)| {
                    String::from_utf8_lossy(&body).lines().find_map(|l| {
                        l.strip_prefix(&format!("{name}: "))
                            .and_then(|v| v.trim().parse::<i64>().ok())
                    })
                });
            if value == Some(want) {
                return;
            }
            if start.elapsed() > limit {
                panic!("{name} = {value:?}, want {want}:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The certificate (PEM) Envoy presents on listener `i`, read with
    /// `openssl s_client`, presenting `client` (certificate and key files)
    /// if given.
    pub fn presented_certificate(&self, i: usize, client: Option<(&Path, &Path)>) -> String {
        let mut command = Command::new("openssl");
        command.args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", self.listener_ports[i]),
        ]);
        if let Some((cert, key)) = client {
            command.arg("-cert").arg(cert).arg("-key").arg(key);
        }
        let out = command
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
        let end_marker = "-----END CERTIFICATE-----";
        let end = text[begin..].find(end_marker).expect("end of certificate") + begin;
        format!("{}\n", &text[begin..end + end_marker.len()])
    }
}

impl Drop for SdsEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- envoy log ----\n{}\n---- end ----", self.log());
        }
    }
}

impl FixedCurator {
    /// Its data directory (`registrations.log`, `checkpoint.key`, the
    /// development CRS), which survives a stop.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Registers a workload `ns/sa` the way an agent does (fresh token,
    /// slot, RBE and TLS keys, bind, then reveal); returns its id.
    pub fn register(&self, mesh: &Mesh, namespace: &str, service_account: &str) -> Result<String> {
        let token = mint(mesh, namespace, service_account);
        self.bind(
            &id_of(&token),
            mazu_curator::client::token_expiry_of(&token),
        )?;
        let (status, body) = self.post(
            &format!("/v1/bindings/{}/reveal", id_of(&token)),
            &serde_json::json!({ "token": token }).to_string(),
        )?;
        if status != 200 && status != 201 {
            bail!("reveal: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(id_of(&token))
    }

    /// Binds `id_hex` to fresh keys (no token) committing to
    /// `token_expiry`, as a curator or anyone who saw the id could (guessing
    /// the expiry); returns the hex SPKI hash of the bound TLS key.
    pub fn bind(&self, id_hex: &str, token_expiry: u64) -> Result<String> {
        let (status, body) = self.post(
            "/v1/slots",
            &serde_json::json!({ "id": id_hex }).to_string(),
        )?;
        if status != 200 && status != 201 {
            bail!(
                "POST /v1/slots: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        let slot = answer["slot"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| anyhow::anyhow!("no slot in {answer}"))?;
        let crs = mazu_rbe::Crs::from_bytes(&std::fs::read(self.data_dir().join("dev-crs.bin"))?)
            .map_err(|e| anyhow::anyhow!("dev CRS: {e:?}"))?;
        let id: [u8; 32] = hex::decode(id_hex)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("id is not 32 bytes"))?;
        let (request, keys) = mazu_agent::binding::build_binding(
            &crs,
            &id,
            token_expiry,
            slot,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| anyhow::anyhow!("keys: {e}"))?;
        let (status, body) = self.post("/v1/bindings", &serde_json::to_string(&request)?)?;
        if status != 200 && status != 201 {
            bail!(
                "POST /v1/bindings: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        use sha2::Digest as _;
        Ok(hex::encode(sha2::Sha256::digest(
            mazu_curator::client::spki_der(&keys.tls),
        )))
    }

    fn post(&self, path: &str, json: &str) -> Result<(u16, Vec<u8>)> {
        mazu_testkit::http::request(self.port, "POST", path, Some(json))
    }

    /// Replaces the extra start flags (e.g. witnesses instead of
    /// `--insecure-no-witness`); effective at the next start.
    pub fn set_args(&mut self, args: Vec<String>) {
        self.extra = args;
    }

    /// Adds start flags; effective at the next start.
    pub fn add_args(&mut self, args: Vec<String>) {
        self.extra.extend(args);
    }

    /// Writes a checkpoint key (from `seed`) and origin into the start
    /// flags and returns the checkpoint verifier, so that witnesses can be
    /// configured for this log before it starts.
    pub fn fix_checkpoint_key(&mut self, seed: u8) -> mazu_log::CheckpointVerifier {
        const ORIGIN: &str = "agent-tests.example/curator";
        let path = self.dir.path().join("checkpoint-key.hex");
        std::fs::write(&path, format!("{}\n", hex::encode([seed; 32]))).expect("key file");
        self.extra.retain(|a| a != "--insecure-no-witness");
        self.extra.extend([
            "--checkpoint-key".to_owned(),
            path.display().to_string(),
            "--checkpoint-origin".to_owned(),
            ORIGIN.to_owned(),
        ]);
        mazu_log::CheckpointSigner::new(ORIGIN, &[seed; 32])
            .expect("signer")
            .verifier()
    }

    /// The log's context (CRS digest) and entries, to rewrite it while the
    /// curator is stopped.
    pub fn read_log(&self) -> ([u8; 32], Vec<Vec<u8>>) {
        mazu_testkit::curator_log::read_log(&self.data_dir()).expect("read the log")
    }

    /// Replaces the log by these entries, so the next start replays exactly
    /// them (and signs checkpoints over them: a curator rewriting its
    /// history).
    pub fn write_log(&self, context: [u8; 32], entries: &[Vec<u8>]) {
        mazu_testkit::curator_log::write_log(&self.data_dir(), context, entries)
            .expect("write the log");
    }
}
