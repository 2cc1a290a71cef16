//! Binds and reveals answer only under a checkpoint cosigned by the witness
//! quorum: the curator (in-process, served over a real socket) with real
//! `mazu-witness` servers in-process, each with its own data directory and
//! key. A witness that is down makes a bind answer `503 witness_unavailable`
//! (the entry stays logged); once the witness is back, the identical request
//! answers with the same index under a cosigned checkpoint.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

use core::net::SocketAddr;
use core::time::Duration;
use std::path::Path;
use std::sync::Arc;

use mazu_curator::client::{build_registration, id_of_token};
use mazu_curator::config::LimitsConfig;
use mazu_curator::metrics::Metrics;
use mazu_curator::service::WitnessMode;
use mazu_curator::store::{LogStore, MemoryLogStore};
use mazu_curator::witnessing::{WitnessEndpoint, WitnessOptions, Witnessing};
use mazu_curator::{AppState, Curator, CuratorOptions, app};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_identity::registry::derive::{IdState, LogFollower};
use mazu_log::checkpoint::{CheckpointSigner, CheckpointVerifier};
use mazu_log::cosignature::{WitnessPolicy, WitnessVerifier};
use mazu_log::record::decode_records;
use mazu_rbe::Crs;
use mazu_witness::{Config, Server};
use serde_json::{Value, json};

const ORIGIN: &str = "mazu-curator/witnessed-test";
const CHECKPOINT_KEY: [u8; 32] = [7; 32];

fn curator_verifier() -> CheckpointVerifier {
    CheckpointSigner::new(ORIGIN, &CHECKPOINT_KEY)
        .unwrap()
        .verifier()
}

/// A running in-process witness of the curator's log.
struct Witness {
    addr: SocketAddr,
    verifier: WitnessVerifier,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), mazu_witness::ServerError>>,
}

impl Witness {
    async fn start(dir: &Path, name: &str, listen: SocketAddr) -> Self {
        let mut config = Config::new(name, vec![curator_verifier()], dir.to_path_buf());
        config.create_key = true;
        config.listen = listen;
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let verifier = WitnessVerifier::parse(&server.vkey()).unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            verifier,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    fn endpoint(&self) -> WitnessEndpoint {
        WitnessEndpoint::parse(&format!("http://{}={}", self.addr, self.verifier.to_vkey()))
            .unwrap()
    }
}

/// A curator over a memory store with these witnesses, served on
/// 127.0.0.1:0.
struct World {
    crs: Crs,
    issuer: DevIssuer,
    base: String,
    http: reqwest::Client,
    store: Arc<MemoryLogStore>,
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
                refresh: Duration::from_secs(30),
                wait: timeout * 4,
            },
            ..CuratorOptions::default()
        };
        let store = Arc::new(MemoryLogStore::new());
        let metrics = Arc::new(Metrics::new());
        let (curator, _) = Curator::open(
            crs.clone(),
            trust,
            store.clone() as Arc<dyn LogStore>,
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
            store,
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

    /// A token and the binding of its id (reserved slot), built.
    async fn binding(&self, sa: &str) -> (String, mazu_curator::api::views::BindingRequest) {
        let token = self.issuer.mint(&TokenRequest::new("shop", sa)).unwrap();
        let id = id_of_token(&token);
        let r = self
            .post("/v1/slots", &json!({ "id": hex::encode(id) }))
            .await;
        assert_eq!(r.status(), 201);
        let slot =
            u32::try_from(r.json::<Value>().await.unwrap()["slot"].as_u64().unwrap()).unwrap();
        let crs = self.crs.clone();
        let minted = token.clone();
        let agent = tokio::task::spawn_blocking(move || {
            build_registration(&crs, &minted, slot, &mut rand::rngs::OsRng).unwrap()
        })
        .await
        .unwrap();
        (token, agent.request)
    }

    async fn records(&self, end: u64) -> Vec<mazu_log::LeafRecord> {
        let bytes = self
            .http
            .get(format!("{}/v1/log/records?start=0&end={end}", self.base))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        decode_records(&bytes).unwrap()
    }
}

/// Verifies a `LoggedJson` answer the way an agent does: the curator's
/// signature, the witness quorum, and a checkpoint covering the index.
/// Returns (size, root).
fn verify_logged(body: &Value, policy: &WitnessPolicy) -> (u64, mazu_log::Hash) {
    let note = body["checkpoint"].as_str().unwrap();
    let cp = curator_verifier().verify(note.as_bytes()).unwrap();
    let witnessed = policy.check(note.as_bytes()).unwrap();
    assert!(witnessed.timestamp > 0);
    assert!(cp.size > body["index"].as_u64().unwrap(), "{body}");
    (cp.size, cp.root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_and_reveals_answer_with_a_checkpoint_the_quorum_cosigned() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = Witness::start(dirs[0].path(), "witness-a", any).await;
    let b = Witness::start(dirs[1].path(), "witness-b", any).await;
    let w = World::start(vec![a.endpoint(), b.endpoint()], 2, Duration::from_secs(5)).await;
    let policy = WitnessPolicy::new(vec![a.verifier.clone(), b.verifier.clone()], 2).unwrap();
    // A policy with a witness the curator does not use is not satisfied.
    let stranger = mazu_log::cosignature::CosignatureSigner::new("stranger", &[3; 32])
        .unwrap()
        .verifier();
    let strict = WitnessPolicy::new(vec![a.verifier.clone(), stranger], 2).unwrap();

    let (token, request) = w.binding("cart").await;
    let r = w.post("/v1/bindings", &request).await;
    assert_eq!(r.status(), 201);
    let bound: Value = r.json().await.unwrap();
    assert_eq!(bound["index"], 0);
    let (size, root) = verify_logged(&bound, &policy);
    assert!(
        strict
            .check(bound["checkpoint"].as_str().unwrap().as_bytes())
            .is_err(),
        "only two cosignatures of the configured witnesses"
    );
    // The agent's step 2: the records up to the witnessed checkpoint give
    // its root, and the first binding of the id is this one.
    let mut follower = LogFollower::new();
    follower
        .extend(&w.records(size).await, size, &root, now_ms())
        .unwrap();
    let id = id_of_token(&token);
    assert!(matches!(
        follower.registry().state(&id),
        Some(IdState::Bound { bound_at: 0, .. })
    ));

    // Step 3: the reveal, witnessed the same way.
    let r = w
        .post(
            &format!("/v1/bindings/{}/reveal", request.id),
            &json!({ "token": token }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let revealed: Value = r.json().await.unwrap();
    let (size, root) = verify_logged(&revealed, &policy);
    let records = w.records(size).await;
    follower
        .extend(&records[follower.size() as usize..], size, &root, now_ms())
        .unwrap();
    assert!(matches!(
        follower.registry().state(&id),
        Some(IdState::Live { .. })
    ));

    // The served checkpoint is witnessed too.
    let note = w
        .http
        .get(format!("{}/v1/checkpoint", w.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    policy.check(note.as_bytes()).unwrap();
    assert_eq!(curator_verifier().verify(note.as_bytes()).unwrap().size, 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_quorum_a_bind_is_logged_but_answered_503_until_witnessed() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = Witness::start(dirs[0].path(), "witness-a", any).await;
    // Witness B: started once for its key, then stopped (its port closed).
    let b = Witness::start(dirs[1].path(), "witness-b", any).await;
    let (b_addr, b_endpoint, b_verifier) = (b.addr, b.endpoint(), b.verifier.clone());
    b.stop().await;
    let w = World::start(
        vec![a.endpoint(), b_endpoint],
        2,
        Duration::from_millis(500),
    )
    .await;
    let policy = WitnessPolicy::new(vec![a.verifier.clone(), b_verifier], 2).unwrap();

    // No checkpoint has the quorum yet.
    let r = w
        .http
        .get(format!("{}/v1/checkpoint", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "witness_unavailable");

    let (_, request) = w.binding("cart").await;
    let r = w.post("/v1/bindings", &request).await;
    assert_eq!(r.status(), 503);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "witness_unavailable", "{body}");
    assert_eq!(w.store.len(), 1, "the entry is logged");

    // Witness B is back (same key, same address): the identical request
    // now answers with the same entry under a cosigned checkpoint.
    let b = Witness::start(dirs[1].path(), "witness-b", b_addr).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let r = w.post("/v1/bindings", &request).await;
        if r.status() == 200 {
            break r.json::<Value>().await.unwrap();
        }
        assert_eq!(r.status(), 503);
        assert!(std::time::Instant::now() < deadline, "never witnessed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["index"], 0);
    verify_logged(&body, &policy);
    assert_eq!(w.store.len(), 1, "nothing appended by the retries");
    a.stop().await;
    b.stop().await;
}

/// Now, Unix milliseconds: the time the followers here check record times
/// against (every record was logged before it).
fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_millis()).unwrap()
}
