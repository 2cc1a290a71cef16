//! Shared test helpers: the `mazu-agent` binary as a child process, tokens
//! from the development issuer written the way the kubelet writes them, and
//! a curator on a fixed port that can be stopped and started again (the
//! wasm-tests harness's `Curator` picks its own port).

#![allow(dead_code, missing_docs)]

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use mazu_agent::state::Status;
use mazu_dev_issuer::TokenRequest;
use mazu_wasm_tests::fixtures::{Mesh, TRUST_DOMAIN};

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
        let log_path = state_dir.with_extension(format!("log-{}", rand::random::<u32>()));
        let log = std::fs::File::create(&log_path).expect("agent log");
        let child = Command::new(AGENT)
            .arg("run")
            .args(["--curator", curator_url])
            .arg("--token-file")
            .arg(token_file)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--poll-interval-ms", "100", "--opening-refresh-ms", "300"])
            .args(["--backoff-initial-ms", "100", "--backoff-max-ms", "1000"])
            .args(["--propagation-delay-ms", "200"])
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

/// Runs `mazu-agent ARGS` to completion.
pub fn agent_command(args: &[&str]) -> Output {
    Command::new(AGENT)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run mazu-agent")
}

/// One HTTP/1.1 GET to 127.0.0.1:`port`: status and body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    mazu_wasm_tests::http::get(port, path)
}

/// The curator's registry (JSON form) fetched from `port`.
pub fn registry(port: u16) -> serde_json::Value {
    let (status, body) = http_get(port, "/v1/registry?format=json").expect("GET /v1/registry");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("registry JSON")
}

/// The registry entry of `id`, if any.
pub fn registry_entry(port: u16, id: &str) -> Option<serde_json::Value> {
    registry(port)["entries"]
        .as_array()?
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
}

/// A curator on a port chosen by the test, with a data directory that
/// survives a stop, so it can be started after the agent, stopped, and
/// started again with the same log and CRS.
pub struct FixedCurator {
    child: Option<Child>,
    dir: tempfile::TempDir,
    issuer_arg: String,
    pub port: u16,
}

impl FixedCurator {
    /// Prepares (does not start) a curator for `mesh` on `port`.
    pub fn new(mesh: &Mesh, port: u16) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, mesh.jwks_json())?;
        Ok(FixedCurator {
            child: None,
            issuer_arg: format!("{}={}", mesh.issuer.issuer_url(), jwks.display()),
            dir,
            port,
        })
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it and waits until `/readyz` answers 200.
    pub fn start(&mut self) -> Result<()> {
        let binary = mazu_wasm_tests::curator::curator_binary()?;
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
            .args(["--audience", "mazu", "--trust-domain", TRUST_DOMAIN])
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
            if http_get(self.port, "/readyz").is_ok_and(|(s, _)| s == 200) {
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
