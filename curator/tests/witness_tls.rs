//! The curator reaches its witnesses over TLS pinned to each witness's key
//! (`--witness https://...=VKEY;tls-pin=PIN`): real `mazu-witness` servers
//! serving TLS (in process, on 127.0.0.1:0) and the curator (in process,
//! served over a real socket). With the witnesses' pins a bind is answered
//! under a checkpoint the quorum cosigned; with a wrong pin no witness is
//! ever reached, the bind answers `503 witness_unavailable`, and the log
//! names the pin the witness presented.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

use core::net::SocketAddr;
use core::time::Duration;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use mazu_curator::client::{build_registration, id_of_token};
use mazu_curator::config::LimitsConfig;
use mazu_curator::metrics::Metrics;
use mazu_curator::service::WitnessMode;
use mazu_curator::store::{LogStore, MemoryLogStore};
use mazu_curator::witnessing::{WitnessEndpoint, WitnessOptions, Witnessing};
use mazu_curator::{AppState, Curator, CuratorOptions, app};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_log::checkpoint::{CheckpointSigner, CheckpointVerifier};
use mazu_log::cosignature::{WitnessPolicy, WitnessVerifier};
use mazu_rbe::Crs;
use mazu_service::tls::SpkiPin;
use mazu_witness::config::Transport;
use mazu_witness::{Config, Server};
use serde_json::{Value, json};

const ORIGIN: &str = "mazu-curator/witness-tls-test";
const CHECKPOINT_KEY: [u8; 32] = [9; 32];

fn curator_verifier() -> CheckpointVerifier {
    CheckpointSigner::new(ORIGIN, &CHECKPOINT_KEY)
        .unwrap()
        .verifier()
}

/// Everything logged in this test process (the witness client logs from
/// the curator's own threads, so a thread-local subscriber would miss it).
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(move || Sink(sink.clone()))
            .init();
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&captured().lock().unwrap()).into_owned()
}

/// A running in-process witness of the curator's log, serving TLS.
struct Witness {
    addr: SocketAddr,
    verifier: WitnessVerifier,
    pin: SpkiPin,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), mazu_witness::ServerError>>,
}

impl Witness {
    async fn start(dir: &Path, name: &str) -> Self {
        let mut config = Config::new(name, vec![curator_verifier()], dir.to_path_buf());
        config.create_key = true;
        config.transport = Transport::Tls {
            key: dir.join("tls.key"),
            create: true,
            pin_file: Some(dir.join("tls.pin")),
        };
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let verifier = WitnessVerifier::parse(&server.vkey()).unwrap();
        let pin = server.tls_pin().unwrap();
        let written: SpkiPin = std::fs::read_to_string(dir.join("tls.pin"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(written, pin, "the pin file holds the served key's pin");
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            verifier,
            pin,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    /// Its `--witness` value, pinned to `pin`.
    fn endpoint_pinned(&self, pin: SpkiPin) -> WitnessEndpoint {
        WitnessEndpoint::parse(&format!(
            "https://{}={};tls-pin={pin}",
            self.addr,
            self.verifier.to_vkey()
        ))
        .unwrap()
    }
}

/// A curator over a memory store with these witnesses, on 127.0.0.1:0.
struct World {
    crs: Crs,
    issuer: DevIssuer,
    base: String,
    http: reqwest::Client,
}

impl World {
    async fn start(endpoints: Vec<WitnessEndpoint>, quorum: usize, timeout: Duration) -> Self {
        let mut rng = rand::rngs::OsRng;
        let crs = Crs::generate_insecure_dev(16, &mut rng).unwrap();
        let issuer = DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rng).unwrap();
        let trust = TrustConfig::builder("cluster.local")
            .audience(mazu_dev_issuer::DEV_AUDIENCE)
            .issuer(
                DEFAULT_ISSUER_URL,
                issuer.jwks_json().as_bytes(),
                mazu_identity::trust::NamespaceScope::any(),
            )
            .build()
            .unwrap();
        let witnessing = Witnessing::new(WitnessOptions {
            endpoints,
            quorum,
            request_timeout: timeout,
        })
        .unwrap();
        let options = CuratorOptions {
            checkpoint_key: Some(CHECKPOINT_KEY),
            checkpoint_origin: Some(ORIGIN.into()),
            witness: WitnessMode::Witnesses {
                witnessing,
                refresh: Duration::from_secs(1),
                wait: timeout * 2,
            },
            ..CuratorOptions::default()
        };
        let store = Arc::new(MemoryLogStore::new());
        let metrics = Arc::new(Metrics::new());
        let (curator, _) = Curator::open(
            crs.clone(),
            trust,
            store as Arc<dyn LogStore>,
            metrics.clone(),
            &options,
        )
        .unwrap();
        let state = AppState::with_curator(Arc::new(curator), metrics, LimitsConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app(state).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            crs,
            issuer,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &impl serde::Serialize) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The binding request of a fresh token's id (slot reserved).
    async fn binding(&self, sa: &str) -> mazu_curator::api::views::BindingRequest {
        let token = self.issuer.mint(&TokenRequest::new("shop", sa)).unwrap();
        let id = id_of_token(&token);
        let r = self
            .post("/v1/slots", &json!({ "id": hex::encode(id) }))
            .await;
        assert_eq!(r.status(), 201);
        let slot =
            u32::try_from(r.json::<Value>().await.unwrap()["slot"].as_u64().unwrap()).unwrap();
        let crs = self.crs.clone();
        tokio::task::spawn_blocking(move || {
            build_registration(&crs, &token, slot, &mut rand::rngs::OsRng)
                .unwrap()
                .request
        })
        .await
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_witnesses_pins_binds_reach_the_quorum() {
    captured();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Witness::start(dirs[0].path(), "witness-tls-a").await;
    let b = Witness::start(dirs[1].path(), "witness-tls-b").await;
    let w = World::start(
        vec![a.endpoint_pinned(a.pin), b.endpoint_pinned(b.pin)],
        2,
        Duration::from_secs(5),
    )
    .await;
    let policy = WitnessPolicy::new(vec![a.verifier.clone(), b.verifier.clone()], 2).unwrap();

    let request = w.binding("cart").await;
    let r = w.post("/v1/bindings", &request).await;
    assert_eq!(r.status(), 201);
    let bound: Value = r.json().await.unwrap();
    let note = bound["checkpoint"].as_str().unwrap();
    curator_verifier().verify(note.as_bytes()).unwrap();
    policy.check(note.as_bytes()).unwrap();
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_wrong_pin_no_checkpoint_is_witnessed_and_the_pin_seen_is_logged() {
    captured();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Witness::start(dirs[0].path(), "witness-pin-a").await;
    let b = Witness::start(dirs[1].path(), "witness-pin-b").await;
    // Witness B is pinned to A's key: B's server is refused at the
    // handshake, so the quorum of two is never met.
    let w = World::start(
        vec![a.endpoint_pinned(a.pin), b.endpoint_pinned(a.pin)],
        2,
        Duration::from_millis(500),
    )
    .await;

    let request = w.binding("cart").await;
    for _ in 0..3 {
        let r = w.post("/v1/bindings", &request).await;
        assert_eq!(r.status(), 503);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "witness_unavailable", "{body}");
    }
    let r = w
        .http
        .get(format!("{}/v1/checkpoint", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "no checkpoint has the quorum");

    // The warning names the witness and the pin its server presented.
    let wanted = format!("the server's TLS key (pin {}) is not a pinned key", b.pin);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let logs = logs();
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("witness-pin-b") && l.contains(&wanted))
        {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line names the pin seen ({wanted}):\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(line.contains("witness did not cosign"), "{line}");
    a.stop().await;
    b.stop().await;
}
