//! Test harness: a real curator (the `mazu_curator::server::run` the binary
//! runs, on 127.0.0.1 with its data directory, over real HTTP) that can be
//! stopped, tampered with on disk and restarted; registrations; a lying
//! HTTP proxy in front of it; and log-file surgery that keeps every frame's
//! CRC valid.

#![allow(dead_code, clippy::unwrap_used, reason = "test harness")]

use core::net::SocketAddr;
use core::time::Duration;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use mazu_audit::check::{self, CheckConfig, Report};
use mazu_curator::client::build_registration;
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_rbe::Crs;

pub const CAPACITY: u32 = 16;

/// A data directory, a trusted dev issuer and its JWKS file.
pub struct World {
    pub dir: tempfile::TempDir,
    pub issuer: DevIssuer,
    pub jwks_path: PathBuf,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let issuer =
            DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rand::rngs::OsRng)
                .unwrap();
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, issuer.jwks_json()).unwrap();
        Self {
            dir,
            issuer,
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

    /// Starts a curator on the data directory (dev CRS, capacity 16).
    pub async fn start(&self) -> RunningCurator {
        let addr_file = self.dir.path().join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let args = vec![
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
        ];
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

    /// The audit configuration for `base`, with an optional state file.
    pub fn check_config(&self, base: &str, crs: &Crs, state: Option<&Path>) -> CheckConfig {
        CheckConfig {
            curator: base.to_owned(),
            crs_digest: crs.digest(),
            trust: self.trust(),
            state: state.map(Path::to_path_buf),
            checkpoint_key: None,
            threads: 2,
        }
    }

    pub async fn audit(&self, base: &str, crs: &Crs, state: Option<&Path>) -> Report {
        check::run(&self.check_config(base, crs, state), &mut |_| {})
            .await
            .unwrap()
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

    /// Registers a fresh token for `ns/sa`; panics unless accepted.
    pub async fn register(&self, world: &World, crs: &Crs, ns: &str, sa: &str) {
        let token = world.token(ns, sa);
        let (status, body) = self
            .post("/v1/slots", &serde_json::json!({ "token": token }))
            .await;
        assert!(status == 201 || status == 200, "{body}");
        let slot = u32::try_from(body["slot"].as_u64().unwrap()).unwrap();
        let crs = crs.clone();
        let agent = tokio::task::spawn_blocking(move || {
            build_registration(&crs, &token, slot, &mut rand::rngs::OsRng).unwrap()
        })
        .await
        .unwrap();
        let (status, body) = self.post("/v1/registrations", &agent.request).await;
        assert_eq!(status, 201, "{body}");
    }

    async fn post(&self, path: &str, body: &impl serde::Serialize) -> (u16, serde_json::Value) {
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

// ---- a lying proxy ---------------------------------------------------------

/// How the proxy lies about `/v1/log` (and `/v1/checkpoint`).
#[derive(Clone, Debug)]
pub enum Lie {
    /// Passes everything through.
    Honest,
    /// Leaves entry `i` out of the log (later entries move up).
    Drop(usize),
    /// Swaps entries `i` and `j`.
    Swap(usize, usize),
    /// Replaces entry `i` by these bytes.
    Replace(usize, Vec<u8>),
    /// Serves this checkpoint note instead of the curator's.
    Checkpoint(String),
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

    async fn forward(State(p): State<P>, uri: axum::http::Uri) -> axum::response::Response {
        let lie = p.lie.lock().unwrap().clone();
        if uri.path() == "/v1/checkpoint"
            && let Lie::Checkpoint(note) = lie
        {
            return note.into_response();
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
        let all: serde_json::Value = p
            .http
            .get(format!("{}/v1/log?start=0&limit=1000", p.upstream))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut entries: Vec<Vec<u8>> = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                <base64ct::Base64 as base64ct::Encoding>::decode_vec(e["entry"].as_str().unwrap())
                    .unwrap()
            })
            .collect();
        match p.lie.lock().unwrap().clone() {
            Lie::Drop(i) => {
                entries.remove(i);
            }
            Lie::Swap(i, j) => entries.swap(i, j),
            Lie::Replace(i, bytes) => entries[i] = bytes,
            Lie::Honest | Lie::Checkpoint(_) => {}
        }
        let size = entries.len();
        let page: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, e)| {
                serde_json::json!({
                    "index": i,
                    // A consistent liar recomputes the leaf hashes.
                    "leaf_hash": hex::encode(mazu_log::merkle::leaf_hash(e)),
                    "entry": <base64ct::Base64 as base64ct::Encoding>::encode_string(e),
                })
            })
            .collect();
        axum::Json(serde_json::json!({ "size": size, "start": start, "entries": page }))
            .into_response()
    }

    let state = P {
        upstream,
        http: reqwest::Client::new(),
        lie: Arc::new(Mutex::new(lie)),
    };
    let app = axum::Router::new()
        .route("/v1/log", get(log))
        .fallback(forward)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
