//! Process-level test harness: runs the built `mazu-curator` binary on
//! 127.0.0.1 (port 0, address read from `--addr-file`), with a development
//! issuer and CRS in a temporary directory. Every spawned process is killed
//! when its guard drops, also when a test panics; its log is printed then.

#![allow(dead_code)]

use core::net::SocketAddr;
use core::time::Duration;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use mazu_curator::api::views::BindingRequest;
use mazu_curator::client::{AgentRegistration, build_registration, id_of_token};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_rbe::Crs;
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mazu-curator");

/// A temporary directory with a trusted dev issuer (JWKS on disk) and an
/// untrusted one.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub issuer: DevIssuer,
    pub stranger: DevIssuer,
    pub jwks_path: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = rand::rngs::OsRng;
        let issuer =
            DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rng).expect("issuer");
        let stranger =
            DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rng).expect("issuer");
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, issuer.jwks_json()).expect("write jwks");
        Self {
            dir,
            issuer,
            stranger,
            jwks_path,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn issuer_arg(&self) -> String {
        format!(
            "{DEFAULT_ISSUER_URL}={};namespaces=*",
            self.jwks_path.display()
        )
    }

    /// A fresh valid token for `shop/<sa>` (random jti, so every call differs).
    pub fn token(&self, sa: &str) -> String {
        self.issuer
            .mint(&TokenRequest::new("shop", sa))
            .expect("mint")
    }

    /// The common arguments: dev CRS of `capacity` in the data directory,
    /// no witnesses (`--insecure-no-witness`).
    pub fn args(&self, capacity: u32) -> Vec<String> {
        let mut args = self.args_witnessed(capacity);
        args.push("--insecure-no-witness".into());
        args
    }

    /// [`Fixture::args`] without `--insecure-no-witness` (add `--witness`).
    pub fn args_witnessed(&self, capacity: u32) -> Vec<String> {
        vec![
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--dev-crs".into(),
            "--capacity".into(),
            capacity.to_string(),
            "--issuer".into(),
            self.issuer_arg(),
            "--audience".into(),
            mazu_dev_issuer::DEV_AUDIENCE.into(),
            // The API tests speak plain HTTP; tests/tls.rs covers TLS.
            "--insecure-plain-http".into(),
        ]
    }
}

/// A running curator process.
pub struct Curator {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub base: String,
    pub log_path: PathBuf,
    pub http: reqwest::Client,
}

impl Curator {
    /// Starts the binary with `args` plus `--listen 127.0.0.1:0` and an
    /// address file, and waits until it has bound its socket.
    pub fn spawn(dir: &Path, args: &[String]) -> Self {
        Self::spawn_with_env(dir, args, &[])
    }

    /// [`Curator::spawn`] with extra environment variables.
    pub fn spawn_with_env(dir: &Path, args: &[String], env: &[(&str, &std::ffi::OsStr)]) -> Self {
        static COUNTER: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        let addr_file = dir.join(format!("addr-{n}"));
        let log_path = dir.join(format!("curator-{n}.log"));
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(BIN)
            .args(args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--addr-file")
            .arg(&addr_file)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mazu-curator");
        let mut guard = Self {
            child: Some(child),
            addr: "127.0.0.1:0".parse().expect("addr"),
            base: String::new(),
            log_path,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse()
            {
                guard.addr = addr;
                guard.base = format!("http://{addr}");
                return guard;
            }
            if let Some(status) = guard.try_wait() {
                panic!("mazu-curator exited early ({status}):\n{}", guard.log());
            }
            assert!(
                Instant::now() < deadline,
                "no address file after 60 s:\n{}",
                guard.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for `/readyz` to say 200.
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!("mazu-curator exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "not ready after 120 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL through a shared reference (the guard reaps it when dropped).
    pub fn kill9_shared(&self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg("-KILL")
                .arg(child.id().to_string())
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    pub async fn get_bytes(&self, path: &str) -> Vec<u8> {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.bytes().await.expect("bytes").to_vec()
    }

    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        let value = r.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    /// The log size.
    pub async fn version(&self) -> u64 {
        self.get_json("/v1/log?limit=1").await["size"]
            .as_u64()
            .expect("size")
    }

    pub async fn crs(&self) -> Crs {
        Crs::from_bytes(&self.get_bytes("/v1/crs").await).expect("crs")
    }

    /// Reserve a slot for the id of `token`.
    pub async fn reserve(&self, token: &str) -> u32 {
        let id = hex::encode(id_of_token(token));
        let (status, body) = self
            .post("/v1/slots", &serde_json::json!({ "id": id }))
            .await;
        assert!(status == 201 || status == 200, "reserve: {status} {body}");
        u32::try_from(body["slot"].as_u64().expect("slot")).expect("u32")
    }

    /// Reserve a slot, build the binding of the token's id (keygen off the
    /// executor) and return it without sending it.
    pub async fn prepare(&self, crs: &Crs, token: &str) -> AgentRegistration {
        let slot = self.reserve(token).await;
        let crs = crs.clone();
        let token = token.to_owned();
        tokio::task::spawn_blocking(move || {
            build_registration(&crs, &token, slot, &mut rand::rngs::OsRng).expect("keygen")
        })
        .await
        .expect("join")
    }

    /// Full registration: bind, then reveal; panics unless both are
    /// accepted. Returns the agent and the reveal's answer.
    pub async fn register(&self, crs: &Crs, token: &str) -> (AgentRegistration, Value) {
        let agent = self.prepare(crs, token).await;
        let (status, body) = self.post_binding(&agent.request).await;
        assert_eq!(status, 201, "bind: {body}");
        let (status, body) = self.post_reveal(&agent.request.id, token).await;
        assert_eq!(status, 201, "reveal: {body}");
        (agent, body)
    }

    pub async fn post_binding(&self, request: &BindingRequest) -> (u16, Value) {
        self.post("/v1/bindings", request).await
    }

    pub async fn post_reveal(&self, hex_id: &str, token: &str) -> (u16, Value) {
        self.post(
            &format!("/v1/bindings/{hex_id}/reveal"),
            &serde_json::json!({ "token": token }),
        )
        .await
    }
}

impl Drop for Curator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- mazu-curator log ({}) ----\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// The `error.code` of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}
