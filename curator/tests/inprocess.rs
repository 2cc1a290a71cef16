//! In-process tests where they are the better tool: a failing disk (memory
//! store with failure injection), the not-ready state, and the tower limits
//! (timeouts, load shedding, slow clients) on a real socket with hand-written
//! HTTP.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

use core::time::Duration;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mazu_curator::config::LimitsConfig;
use mazu_curator::metrics::Metrics;
use mazu_curator::store::{LogStore, MemoryLogStore};
use mazu_curator::{AppState, Curator, CuratorOptions, app};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_rbe::Crs;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

struct World {
    crs: Crs,
    issuer: DevIssuer,
    store: Arc<MemoryLogStore>,
    state: AppState,
}

fn world(limits: LimitsConfig) -> World {
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
    let store = Arc::new(MemoryLogStore::new());
    let metrics = Arc::new(Metrics::new());
    let (curator, report) = Curator::open(
        crs.clone(),
        trust,
        store.clone() as Arc<dyn LogStore>,
        metrics.clone(),
        &CuratorOptions::default(),
    )
    .unwrap();
    assert_eq!(report.entries, 0);
    let state = AppState::with_curator(Arc::new(curator), metrics, limits);
    World {
        crs,
        issuer,
        store,
        state,
    }
}

async fn call(state: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let response = app(state.clone()).oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post_json(path: &str, body: &impl serde::Serialize) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn storage_failure_changes_nothing_and_is_reported() {
    let w = world(LimitsConfig::default());
    let token = w.issuer.mint(&TokenRequest::new("shop", "cart")).unwrap();
    let id = mazu_curator::client::id_of_token(&token);
    let (s, slot) = call(
        &w.state,
        post_json("/v1/slots", &serde_json::json!({ "id": hex::encode(id) })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let slot = u32::try_from(slot["slot"].as_u64().unwrap()).unwrap();
    let agent =
        mazu_curator::client::build_registration(&w.crs, &token, slot, &mut rand::rngs::OsRng)
            .unwrap();

    let (_, params_before) = call(&w.state, get("/v1/params")).await;
    let (_, checkpoint_before) = call(&w.state, get("/v1/checkpoint")).await;
    w.store.fail_next_append();
    let (s, body) = call(&w.state, post_json("/v1/bindings", &agent.request)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable");
    assert_eq!(w.store.len(), 0);
    let (_, params_after) = call(&w.state, get("/v1/params")).await;
    assert_eq!(params_before, params_after);
    assert_eq!(
        call(&w.state, get("/v1/checkpoint")).await.1,
        checkpoint_before
    );

    // The disk recovered: the same binding now goes through.
    let (s, body) = call(&w.state, post_json("/v1/bindings", &agent.request)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["index"], 0);
    assert_eq!(w.store.len(), 1);

    // The same for a reveal.
    let reveal = format!("/v1/bindings/{}/reveal", agent.request.id);
    let token_body = serde_json::json!({ "token": token });
    w.store.fail_next_append();
    let (s, body) = call(&w.state, post_json(&reveal, &token_body)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(w.store.len(), 1);
    let (s, body) = call(&w.state, post_json(&reveal, &token_body)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["index"], 1);
    assert_eq!(w.store.len(), 2);

    // Metrics are labelled by route pattern.
    let response = app(w.state.clone())
        .oneshot(get(&format!("/v1/openings/{slot}")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app(w.state.clone()).oneshot(get("/metrics")).await.unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains(r#"route="/v1/openings/{slot}""#), "{text}");
    assert!(
        text.contains(
            r#"mazu_curator_registrations_refused_total{reason="storage_unavailable"} 2"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn not_ready_until_the_log_is_replayed() {
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(metrics, LimitsConfig::default(), true);
    let (s, body) = call(&state, get("/v1/params")).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready"))
    );
    let (s, body) = call(&state, get("/readyz")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "starting");
    assert_eq!(body["dev_crs"], true);
    let (s, body) = call(&state, get("/healthz")).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("ok")));
}

/// Serves the app on 127.0.0.1:0 and returns the address.
async fn serve(state: AppState) -> core::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app(state).into_make_service_with_connect_info::<core::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A client that sends headers announcing a body and then stalls.
async fn slow_client(addr: core::net::SocketAddr) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /v1/slots HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id",
    )
    .await
    .unwrap();
    s
}

async fn read_status(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn slow_clients_time_out_and_excess_load_is_shed() {
    let limits = LimitsConfig {
        max_concurrent_requests: 2,
        request_timeout: Duration::from_secs(3),
        ..LimitsConfig::default()
    };
    let w = world(limits);
    let addr = serve(w.state.clone()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/params");

    // One slow client does not block anyone.
    let mut a = slow_client(addr).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Two slow clients hold both permits: further requests are shed at once
    // (503, no queueing), probes still answer.
    let mut b = slow_client(addr).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let r = loop {
        // (The server may take a moment to start handling `b`.)
        let started = std::time::Instant::now();
        let r = http.get(&url).send().await.unwrap();
        if r.status() == 503 {
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "shed, not queued"
            );
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "never shed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    let r = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The slow clients get 408 when their time is up, and service resumes.
    for s in [&mut a, &mut b] {
        let response = read_status(s).await;
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("\"timeout\""), "{response}");
    }
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_log_that_does_not_replay_is_refused_with_its_index() {
    // One valid binding, then an entry with a valid frame but no valid
    // content (a bug or tampering, not a crash): opening must fail, naming it.
    let w = world(LimitsConfig::default());
    let token = w.issuer.mint(&TokenRequest::new("shop", "cart")).unwrap();
    let agent = mazu_curator::client::build_registration(&w.crs, &token, 3, &mut rand::rngs::OsRng)
        .unwrap();
    let (s, body) = call(&w.state, post_json("/v1/bindings", &agent.request)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    w.store.append(b"MZLE\x03 not an entry").unwrap();
    let err = reopen(&w).unwrap_err();
    assert!(
        matches!(
            err,
            mazu_curator::service::OpenError::Replay { index: 1, .. }
        ),
        "{err}"
    );
}

fn reopen(
    w: &World,
) -> Result<(Curator, mazu_curator::service::ReplayReport), mazu_curator::service::OpenError> {
    let trust = TrustConfig::builder("cluster.local")
        .audience(mazu_dev_issuer::DEV_AUDIENCE)
        .issuer(
            DEFAULT_ISSUER_URL,
            w.issuer.jwks_json().as_bytes(),
            mazu_identity::trust::NamespaceScope::any(),
        )
        .build()
        .unwrap();
    Curator::open(
        w.crs.clone(),
        trust,
        w.store.clone() as Arc<dyn LogStore>,
        Arc::new(Metrics::new()),
        &CuratorOptions::default(),
    )
}

/// The curator never logs a void entry, and one in its log (here a second
/// binding of a bound id, well-formed in every other way: valid proof of
/// possession and RBE registration) means the log is not one it wrote:
/// opening refuses it, naming the entry.
#[tokio::test]
async fn a_void_entry_in_the_log_is_refused_with_its_index() {
    let w = world(LimitsConfig::default());
    let token = w.issuer.mint(&TokenRequest::new("shop", "cart")).unwrap();
    let id = mazu_curator::client::id_of_token(&token);
    let first = mazu_curator::client::build_registration(&w.crs, &token, 3, &mut rand::rngs::OsRng)
        .unwrap();
    let (s, body) = call(&w.state, post_json("/v1/bindings", &first.request)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // The curator itself refuses the second binding...
    let second =
        mazu_curator::client::build_registration(&w.crs, &token, 4, &mut rand::rngs::OsRng)
            .unwrap();
    let (s, body) = call(&w.state, post_json("/v1/bindings", &second.request)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_registered"))
    );
    assert_eq!(w.store.len(), 1, "a refused binding is not logged");
    // ... and a log holding it does not replay.
    let registration: mazu_rbe::Registration =
        serde_json::from_value(second.request.registration.clone()).unwrap();
    let spki = mazu_curator::client::spki_der(&second.tls_key);
    let entry = mazu_curator::entry::LogEntry {
        at_ms: 1,
        id,
        body: mazu_curator::entry::EntryBody::Bind {
            slot: 4,
            token_expiry: second.request.token_expiry,
            tls_signature: mazu_curator::client::sign_pop(
                &second.tls_key,
                &registration,
                second.request.token_expiry,
                &spki,
            ),
            tls_spki: spki,
            registration: registration.to_bytes(),
        },
    };
    w.store.append(&entry.to_bytes()).unwrap();
    let err = reopen(&w).unwrap_err();
    assert!(
        matches!(
            &err,
            mazu_curator::service::OpenError::Replay { index: 1, .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("already bound"), "{err}");
}
