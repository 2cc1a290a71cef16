//! Test harness: a real curator (the `mazu_curator::server::run` the binary
//! runs, on 127.0.0.1 with its data directory, over real HTTP) whose
//! checkpoints are cosigned by real `mazu-witness` servers (in-process);
//! registrations in the log format 2 flow (slot, bind, reveal); and a lying
//! HTTP proxy in front of the curator that serves a doctored log, or a
//! doctored log under a checkpoint signed with the curator's key and
//! cosigned with the witnesses' keys (a curator whose witnesses were fooled
//! or collude: what only the audit of the entries can catch).

#![allow(dead_code, clippy::unwrap_used, reason = "test harness")]

use core::net::SocketAddr;
use core::time::Duration;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64ct::Encoding as _;
use clap::Parser;
use mazu_audit::check::{self, CheckConfig, Report};
use mazu_curator::client::{AgentRegistration, build_registration};
use mazu_curator::entry::LogEntry;
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_log::checkpoint::CheckpointSigner;
use mazu_log::cosignature::{CosignatureSigner, WitnessVerifier};
use mazu_log::merkle::{MerkleTree, leaf_hash};
use mazu_rbe::Crs;
use mazu_service::tls::ClientTransport;
use sha2::Digest as _;

pub const CAPACITY: u32 = 16;

/// The curator's checkpoint origin in these tests.
pub const ORIGIN: &str = "audit.test/curator";

/// The curator's checkpoint key (fixed: the tests sign forged checkpoints
/// with it, as a lying curator would).
pub const CURATOR_KEY: [u8; 32] = [0x42; 32];

/// How many witnesses cosign (the quorum is all of them).
pub const WITNESSES: usize = 2;

/// A running in-process witness.
pub struct RunningWitness {
    pub addr: SocketAddr,
    pub signer: Arc<CosignatureSigner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningWitness {
    async fn start(dir: &Path, name: &str) -> Self {
        let curator = CheckpointSigner::new(ORIGIN, &CURATOR_KEY).unwrap();
        let mut config =
            mazu_witness::Config::new(name, vec![curator.verifier()], dir.to_path_buf());
        config.create_key = true;
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = mazu_witness::Server::bind(config.clone()).await.unwrap();
        let addr = server.local_addr();
        // The key now exists: the test holds it too, to cosign forgeries.
        let signer = Arc::new(mazu_witness::server::load_signer(&config).unwrap());
        assert_eq!(signer.verifier().to_vkey(), server.vkey());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            signer,
            stop: Some(stop),
        }
    }

    pub fn verifier(&self) -> WitnessVerifier {
        self.signer.verifier()
    }
}

impl Drop for RunningWitness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A data directory, a trusted dev issuer and its JWKS file, the witnesses.
pub struct World {
    pub dir: tempfile::TempDir,
    pub issuer: DevIssuer,
    pub jwks_path: PathBuf,
    pub witnesses: Vec<RunningWitness>,
}

impl World {
    pub async fn new() -> Self {
        // The curator's and witnesses' logs, for failures (RUST_LOG).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let issuer =
            DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rand::rngs::OsRng)
                .unwrap();
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, issuer.jwks_json()).unwrap();
        let mut witnesses = Vec::new();
        for i in 0..WITNESSES {
            let name = format!("witness-{i}.audit.test");
            witnesses.push(RunningWitness::start(&dir.path().join(&name), &name).await);
        }
        Self {
            dir,
            issuer,
            jwks_path,
            witnesses,
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

    pub fn token(&self, ns: &str, sa: &str) -> String {
        self.issuer.mint(&TokenRequest::new(ns, sa)).unwrap()
    }

    pub fn trust(&self) -> TrustConfig {
        TrustConfig::builder("cluster.local")
            .audience(mazu_dev_issuer::DEV_AUDIENCE)
            .issuer(
                DEFAULT_ISSUER_URL,
                &self.issuer.jwks_json().into_bytes(),
                mazu_identity::trust::NamespaceScope::any(),
            )
            .build()
            .unwrap()
    }

    pub fn witness_vkeys(&self) -> Vec<String> {
        self.witnesses
            .iter()
            .map(|w| w.verifier().to_vkey())
            .collect()
    }

    /// The witnesses' signing keys (to cosign forgeries).
    pub fn witness_signers(&self) -> Vec<Arc<CosignatureSigner>> {
        self.witnesses
            .iter()
            .map(|w| Arc::clone(&w.signer))
            .collect()
    }

    pub fn curator_signer(&self) -> CheckpointSigner {
        CheckpointSigner::new(ORIGIN, &CURATOR_KEY).unwrap()
    }

    /// Starts a curator on the data directory (dev CRS, capacity 16, the
    /// fixed checkpoint key, every witness, quorum all).
    pub async fn start(&self) -> RunningCurator {
        std::fs::create_dir_all(self.data_dir()).unwrap();
        let key_path = self.dir.path().join("checkpoint.key");
        std::fs::write(&key_path, hex::encode(CURATOR_KEY)).unwrap();
        let addr_file = self.dir.path().join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut args = vec![
            "mazu-curator".to_owned(),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--dev-crs".into(),
            "--capacity".into(),
            CAPACITY.to_string(),
            "--issuer".into(),
            self.issuer_arg(),
            "--audience".into(),
            mazu_dev_issuer::DEV_AUDIENCE.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--addr-file".into(),
            addr_file.display().to_string(),
            "--rate-limit-per-minute".into(),
            "0".into(),
            "--checkpoint-key".into(),
            key_path.display().to_string(),
            "--checkpoint-origin".into(),
            ORIGIN.into(),
            // The audit tests speak plain HTTP; TLS is covered by e2e.
            "--insecure-plain-http".into(),
            // Their witnesses too (TLS witnesses: curator/tests/witness_tls.rs).
            "--insecure-plain-http-witness".into(),
        ];
        for w in &self.witnesses {
            args.push("--witness".into());
            args.push(format!("http://{}={}", w.addr, w.verifier().to_vkey()));
        }
        let config = mazu_curator::config::Args::try_parse_from(args)
            .unwrap()
            .validate()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(mazu_curator::server::run(config, async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr: SocketAddr = loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse()
            {
                break addr;
            }
            assert!(!task.is_finished(), "curator stopped during start-up");
            assert!(Instant::now() < deadline, "curator did not bind");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let c = RunningCurator {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        };
        loop {
            if let Ok(r) = c.http.get(c.url("/readyz")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "curator not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c
    }

    /// The audit configuration for `base` (every witness, quorum all), with
    /// an optional state file.
    pub fn check_config(&self, base: &str, crs: &Crs, state: Option<&Path>) -> CheckConfig {
        CheckConfig {
            curator: base.to_owned(),
            curator_transport: ClientTransport::InsecurePlainHttp,
            crs_digest: crs.digest(),
            trust: self.trust(),
            state: state.map(Path::to_path_buf),
            checkpoint_key: None,
            witnesses: self
                .witnesses
                .iter()
                .map(RunningWitness::verifier)
                .collect(),
            witness_quorum: None,
            insecure_no_witness: false,
            threads: 2,
        }
    }

    pub async fn audit(&self, base: &str, crs: &Crs, state: Option<&Path>) -> Report {
        check::run(&self.check_config(base, crs, state), &mut |_| {})
            .await
            .unwrap()
    }

    /// A lying front before `upstream` that serves `log` (entry, record
    /// pairs) under a checkpoint this world's curator key and witnesses
    /// signed; returns its base URL.
    pub async fn serve_forged(&self, upstream: &str, log: Vec<(Vec<u8>, Vec<u8>)>) -> String {
        lying_proxy(
            upstream.to_owned(),
            Lie::Forged {
                log,
                witnesses: self.witness_signers(),
            },
        )
        .await
    }

    /// [`World::serve_forged`] of these entry frames, each with its own
    /// record.
    pub async fn serve_forged_frames(&self, upstream: &str, frames: &[Vec<u8>]) -> String {
        let log = frames.iter().map(|f| (f.clone(), record_of(f))).collect();
        self.serve_forged(upstream, log).await
    }
}

pub struct RunningCurator {
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), mazu_curator::server::ServerError>>>,
}

impl RunningCurator {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn crs(&self) -> Crs {
        let bytes = self
            .http
            .get(self.url("/v1/crs"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        Crs::from_bytes(&bytes).unwrap()
    }

    /// Reserves a slot for `token`'s id and binds it (the token is not
    /// sent); panics unless logged and witnessed.
    pub async fn bind(&self, crs: &Crs, token: &str) -> AgentRegistration {
        let id: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let token = token.to_owned();
        let (status, body) = self
            .post("/v1/slots", &serde_json::json!({ "id": hex::encode(id) }))
            .await;
        assert!(status == 201 || status == 200, "{body}");
        let slot = u32::try_from(body["slot"].as_u64().unwrap()).unwrap();
        let crs = crs.clone();
        let agent = tokio::task::spawn_blocking(move || {
            build_registration(&crs, &token, slot, &mut rand::rngs::OsRng).unwrap()
        })
        .await
        .unwrap();
        let (status, body) = self.post("/v1/bindings", &agent.request).await;
        assert_eq!(status, 201, "{body}");
        agent
    }

    /// Reveals `token` for its bound id; panics unless logged.
    pub async fn reveal(&self, token: &str) {
        let id = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let (status, body) = self
            .post(
                &format!("/v1/bindings/{id}/reveal"),
                &serde_json::json!({ "token": token }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Binds and reveals a fresh token for `ns/sa` (two log entries).
    pub async fn register(&self, world: &World, crs: &Crs, ns: &str, sa: &str) {
        let token = world.token(ns, sa);
        self.bind(crs, &token).await;
        self.reveal(&token).await;
    }

    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The served log: every entry's bytes and its served record's bytes.
    pub async fn log(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        fetch_log(&self.http, &self.base).await
    }

    /// Graceful stop (as SIGTERM does).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for RunningCurator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn fetch_log(http: &reqwest::Client, base: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let all: serde_json::Value = http
        .get(format!("{base}/v1/log?start=0&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b64 = |v: &serde_json::Value| base64ct::Base64::decode_vec(v.as_str().unwrap()).unwrap();
    all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (b64(&e["entry"]), b64(&e["record"])))
        .collect()
}

/// The record bytes an honest curator logs for `entry`.
pub fn record_of(entry: &[u8]) -> Vec<u8> {
    LogEntry::from_bytes(entry)
        .unwrap()
        .record(entry)
        .unwrap()
        .to_bytes()
}

// ---- a lying proxy ---------------------------------------------------------

/// How the proxy lies about `/v1/log` (and `/v1/checkpoint`).
#[derive(Clone)]
pub enum Lie {
    /// Passes everything through.
    Honest,
    /// Leaves entry `i` (and its record) out of the log.
    Drop(usize),
    /// Swaps entries `i` and `j` (with their records).
    Swap(usize, usize),
    /// Replaces entry `i` by these bytes, keeping the served record.
    Replace(usize, Vec<u8>),
    /// Serves this checkpoint note instead of the curator's.
    Checkpoint(String),
    /// Serves exactly these (entry, record) pairs, under a checkpoint over
    /// their records signed with the curator's key and cosigned by these
    /// witness keys now (a curator that logs what it should not, with its
    /// witnesses fooled or colluding).
    Forged {
        log: Vec<(Vec<u8>, Vec<u8>)>,
        witnesses: Vec<Arc<CosignatureSigner>>,
    },
}

/// The note of a forged log: the curator's signature and the witnesses'
/// cosignatures (time: now) over the root of `records`.
pub fn forged_note(records: &[Vec<u8>], witnesses: &[Arc<CosignatureSigner>]) -> String {
    let tree = MerkleTree::from_leaves(records.iter().map(|r| leaf_hash(r)));
    let size = tree.len();
    let signer = CheckpointSigner::new(ORIGIN, &CURATOR_KEY).unwrap();
    let note = signer.sign(size, &tree.root(size).unwrap());
    let checkpoint = signer.verifier().verify(note.as_bytes()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lines: Vec<String> = witnesses
        .iter()
        .map(|w| w.cosign(&checkpoint, now).unwrap())
        .collect();
    mazu_log::cosignature::append_cosignatures(&note, &lines).unwrap()
}

/// Starts the proxy in front of `upstream`; returns its base URL.
pub async fn lying_proxy(upstream: String, lie: Lie) -> String {
    use axum::extract::{Query, State};
    use axum::response::IntoResponse;
    use axum::routing::get;

    #[derive(Clone)]
    struct P {
        upstream: String,
        http: reqwest::Client,
        lie: Arc<Mutex<Lie>>,
    }

    impl P {
        /// The (entry, record) pairs served, after the lie.
        async fn log(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            let lie = self.lie.lock().unwrap().clone();
            if let Lie::Forged { log, .. } = lie {
                return log;
            }
            let mut log = fetch_log(&self.http, &self.upstream).await;
            match lie {
                Lie::Drop(i) => {
                    log.remove(i);
                }
                Lie::Swap(i, j) => log.swap(i, j),
                Lie::Replace(i, bytes) => log[i].0 = bytes,
                Lie::Honest | Lie::Checkpoint(_) | Lie::Forged { .. } => {}
            }
            log
        }
    }

    async fn forward(State(p): State<P>, uri: axum::http::Uri) -> axum::response::Response {
        let lie = p.lie.lock().unwrap().clone();
        if uri.path() == "/v1/checkpoint" {
            match lie {
                Lie::Checkpoint(note) => return note.into_response(),
                Lie::Forged { log, witnesses } => {
                    let records: Vec<Vec<u8>> = log.into_iter().map(|(_, r)| r).collect();
                    return forged_note(&records, &witnesses).into_response();
                }
                _ => {}
            }
        }
        let r = p
            .http
            .get(format!("{}{}", p.upstream, uri))
            .send()
            .await
            .unwrap();
        let status = axum::http::StatusCode::from_u16(r.status().as_u16()).unwrap();
        let body = r.bytes().await.unwrap();
        (status, body.to_vec()).into_response()
    }

    async fn log(
        State(p): State<P>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        let start: usize = q.get("start").map_or(0, |s| s.parse().unwrap());
        let limit: usize = q.get("limit").map_or(100, |s| s.parse().unwrap());
        let log = p.log().await;
        let page: Vec<serde_json::Value> = log
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, (entry, record))| {
                serde_json::json!({
                    "index": i,
                    // A consistent liar serves the leaf hash of its record.
                    "leaf_hash": hex::encode(leaf_hash(record)),
                    "record": base64ct::Base64::encode_string(record),
                    "entry": base64ct::Base64::encode_string(entry),
                })
            })
            .collect();
        axum::Json(serde_json::json!({ "size": log.len(), "start": start, "entries": page }))
            .into_response()
    }

    /// Inclusion proofs in the served log (so that a forged log is judged
    /// on its entries, not on proofs the honest curator cannot give).
    async fn inclusion(
        State(p): State<P>,
        Query(q): Query<std::collections::HashMap<String, u64>>,
    ) -> axum::response::Response {
        let log = p.log().await;
        let tree = MerkleTree::from_leaves(log.iter().map(|(_, r)| leaf_hash(r)));
        let (index, size) = (q["index"], q["size"]);
        let proof = tree.inclusion_proof(index, size).unwrap_or_default();
        axum::Json(serde_json::json!({
            "index": index,
            "size": size,
            "leaf_hash": hex::encode(tree.leaf(index).unwrap_or_default()),
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        }))
        .into_response()
    }

    let state = P {
        upstream,
        http: reqwest::Client::new(),
        lie: Arc::new(Mutex::new(lie)),
    };
    let app = axum::Router::new()
        .route("/v1/log", get(log))
        .route("/v1/proofs/inclusion", get(inclusion))
        .fallback(forward)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
