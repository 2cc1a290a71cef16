//! The real `mazu-curator` process on 127.0.0.1, for tests: started with a
//! development CRS and the fixtures' token issuer, workloads registered
//! through its HTTP API exactly as an agent does (`POST /v1/slots {id}`,
//! `POST /v1/bindings` built with `mazu_curator::client`, then
//! `POST /v1/bindings/{id}/reveal` with the token).
//!
//! It runs without witnesses (`--insecure-no-witness`), and a filter
//! following it needs `"insecure_no_witness": true`
//! ([`Curator::log_members`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use core::time::Duration;
use p256::ecdsa::SigningKey;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};

use crate::fixtures::{AUDIENCE, Mesh, TRUST_DOMAIN, Workload, WorkloadSpec};

/// The command that builds the curator binary.
pub const BUILD_COMMAND: &str = "cargo build -p mazu-curator";

/// Where the curator binary is: `$MAZU_CURATOR_BIN`, or `debug/mazu-curator`
/// (then `release/`) in the target directory this test runs from.
pub fn curator_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MAZU_CURATOR_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("MAZU_CURATOR_BIN={} does not exist", path.display());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        candidates.push(dir.join("debug/mazu-curator"));
        candidates.push(dir.join("release/mazu-curator"));
    }
    if let Ok(exe) = std::env::current_exe() {
        // <target>/<profile>/deps/<test binary>
        if let Some(profile_dir) = exe.parent().and_then(|deps| deps.parent()) {
            candidates.push(profile_dir.join("mazu-curator"));
        }
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(workspace.join("target/debug/mazu-curator"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| anyhow!("the mazu-curator binary is missing: run `{BUILD_COMMAND}` first (or set MAZU_CURATOR_BIN)"))
}

/// A running curator; killed on drop, its log printed if the thread panicked.
pub struct Curator {
    child: Child,
    dir: tempfile::TempDir,
    /// Its HTTP port.
    pub port: u16,
}

impl Curator {
    /// Starts a curator trusting `mesh`'s issuer, with a development CRS of
    /// capacity 16, and waits until it is ready.
    pub fn start(mesh: &Mesh) -> Result<Curator> {
        let binary = curator_binary()?;
        let dir = tempfile::tempdir()?;
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, mesh.jwks_json())?;
        let addr_file = dir.path().join("addr");
        let log = std::fs::File::create(dir.path().join("curator.log"))?;
        let child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--dev-crs", "--capacity", "16"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--issuer")
            .arg(format!(
                "{}={};namespaces=*",
                mesh.issuer.issuer_url(),
                jwks.display()
            ))
            .args(["--audience", AUDIENCE, "--trust-domain", TRUST_DOMAIN])
            .arg("--insecure-no-witness")
            // TLS to the curator is shown by e2e and the agent tests; these
            // tests exercise the filter against its API.
            .arg("--insecure-plain-http")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut curator = Curator {
            child,
            dir,
            port: 0,
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(status) = curator.child.try_wait()? {
                bail!("mazu-curator exited with {status}:\n{}", curator.log());
            }
            if curator.port == 0
                && let Ok(addr) = std::fs::read_to_string(&addr_file)
                && let Some(port) = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok())
            {
                curator.port = port;
            }
            if curator.port != 0
                && curator
                    .request("GET", "/readyz", None)
                    .is_ok_and(|(s, _)| s == 200)
            {
                return Ok(curator);
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!("mazu-curator not ready after 60 s:\n{}", curator.log())
    }

    /// One HTTP/1.1 request; the status and body.
    pub fn request(&self, method: &str, path: &str, json: Option<&str>) -> Result<(u16, Vec<u8>)> {
        crate::http::request(self.port, method, path, json)
    }

    /// Registers workload `ns/sa` the way an agent does: a fresh token, a
    /// slot reservation, an RBE key pair and a TLS key with proof of
    /// possession; returns the workload whose certificate uses that TLS key.
    pub fn register(
        &self,
        mesh: &Mesh,
        namespace: &str,
        service_account: &str,
    ) -> Result<Workload> {
        let spec = WorkloadSpec::new(namespace, service_account);
        let mut request = mazu_dev_issuer::TokenRequest::new(namespace, service_account)
            .issued_at(spec.issued_at);
        request.lifetime = spec.token_lifetime;
        let token = mesh.issuer.mint(&request)?;

        let key = register_token(self.port, &self.dir.path().join("data"), &token)?;
        Ok(mesh.workload_with_key(token, &spec, key))
    }

    /// The `curator` members of a filter configuration following this
    /// curator's log (leading comma): its checkpoint key, served at
    /// `/v1/checkpoint/key`, and no witnesses.
    pub fn log_members(&self) -> Result<String> {
        let (status, body) = self.request("GET", "/v1/checkpoint/key", None)?;
        if status != 200 {
            bail!("GET /v1/checkpoint/key: {status}");
        }
        let vkey = String::from_utf8(body)?;
        Ok(format!(
            r#","checkpoint_key":"{}","insecure_no_witness":true"#,
            vkey.trim()
        ))
    }

    /// The curator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("curator.log")).unwrap_or_default()
    }
}

/// Registers `token` at the curator on 127.0.0.1:`port` the way an agent
/// does: a slot reservation for its id, an RBE key pair under the
/// development CRS in the curator's `data_dir` and a TLS key with proof of
/// possession bound to the id (no token), then the token revealed; returns
/// the TLS key.
pub fn register_token(port: u16, data_dir: &Path, token: &str) -> Result<SigningKey> {
    let id: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let id_hex = crate::fixtures::hex(&id);
    let post = |path: &str, body: &str| -> Result<serde_json::Value> {
        let (status, answer) = crate::http::request(port, "POST", path, Some(body))?;
        if status != 200 && status != 201 {
            bail!("POST {path}: {status} {}", String::from_utf8_lossy(&answer));
        }
        Ok(serde_json::from_slice(&answer)?)
    };
    let answer = post("/v1/slots", &format!(r#"{{"id":"{id_hex}"}}"#))?;
    let slot = answer["slot"]
        .as_u64()
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| anyhow!("no slot in {answer}"))?;

    let crs_bytes = std::fs::read(data_dir.join("dev-crs.bin"))?;
    let crs = mazu_rbe::Crs::from_bytes(&crs_bytes).map_err(|e| anyhow!("dev CRS: {e:?}"))?;
    let agent = mazu_curator::client::build_registration(&crs, token, slot, &mut OsRng)
        .map_err(|e| anyhow!("RBE key generation: {e:?}"))?;
    post("/v1/bindings", &serde_json::to_string(&agent.request)?)?;
    post(
        &format!("/v1/bindings/{id_hex}/reveal"),
        &serde_json::json!({ "token": token }).to_string(),
    )?;
    Ok(agent.tls_key)
}

impl Drop for Curator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- mazu-curator log ----\n{}\n---- end ----", self.log());
        }
    }
}
