//! JWKS by URL: fetched at start-up (refusing to start when it cannot be
//! fetched or parsed), refreshed periodically, the last good key set kept
//! when a refresh fails. A tiny HTTP server on 127.0.0.1 plays the issuer.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;

use core::net::SocketAddr;
use core::time::Duration;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use common::{BIN, Curator, Fixture};
use mazu_dev_issuer::DEFAULT_ISSUER_URL;

/// What the JWKS endpoint answers: (status, body).
#[derive(Clone)]
struct Endpoint(Arc<Mutex<(u16, String)>>);

impl Endpoint {
    fn set(&self, status: u16, body: &str) {
        *self.0.lock().unwrap() = (status, body.to_owned());
    }
}

async fn serve_jwks(status: u16, body: &str) -> (Endpoint, SocketAddr) {
    let endpoint = Endpoint(Arc::new(Mutex::new((status, body.to_owned()))));
    let app = axum::Router::new()
        .route(
            "/jwks",
            axum::routing::get(|State(e): State<Endpoint>| async move {
                let (status, body) = e.0.lock().unwrap().clone();
                (StatusCode::from_u16(status).unwrap(), body)
            }),
        )
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, addr)
}

fn url_args(fx: &Fixture, addr: SocketAddr) -> Vec<String> {
    vec![
        "--data-dir".into(),
        fx.data_dir().display().to_string(),
        "--dev-crs".into(),
        "--capacity".into(),
        "16".into(),
        "--issuer".into(),
        format!("{DEFAULT_ISSUER_URL}=http://{addr}/jwks;namespaces=*"),
        "--jwks-refresh-secs".into(),
        "1".into(),
        "--audience".into(),
        mazu_dev_issuer::DEV_AUDIENCE.into(),
        "--insecure-no-witness".into(),
        "--insecure-plain-http".into(),
        "--rate-limit-per-minute".into(),
        "0".into(),
    ]
}

/// Binds the token's id (unless it is bound already) and reveals the token:
/// the reveal's status (where the token is checked).
async fn reserve_status(c: &Curator, token: &str) -> u16 {
    let id = mazu_curator::client::id_of_token(token);
    let (status, body) = c
        .post("/v1/slots", &serde_json::json!({ "id": hex::encode(id) }))
        .await;
    if status == 201 || status == 200 {
        let slot = u32::try_from(body["slot"].as_u64().unwrap()).unwrap();
        let crs = c.crs().await;
        let token = token.to_owned();
        let agent = tokio::task::spawn_blocking(move || {
            mazu_curator::client::build_registration(&crs, &token, slot, &mut rand::rngs::OsRng)
                .unwrap()
        })
        .await
        .unwrap();
        let (status, body) = c.post_binding(&agent.request).await;
        assert_eq!(status, 201, "{body}");
    }
    c.post_reveal(&hex::encode(id), token).await.0
}

/// Runs the binary to completion (it is expected to refuse to start).
async fn run_to_exit(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

// Multi-threaded: the JWKS server must answer while the test thread waits
// for the curator process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_is_fetched_refreshed_and_kept_on_failure() {
    let fx = Fixture::new();
    let (endpoint, addr) = serve_jwks(200, &fx.issuer.jwks_json()).await;
    let mut c = Curator::spawn(fx.dir.path(), &url_args(&fx, addr));
    c.ready().await;
    assert_eq!(reserve_status(&c, &fx.token("a")).await, 201);
    assert_eq!(
        reserve_status(
            &c,
            &fx.stranger
                .mint(&mazu_dev_issuer::TokenRequest::new("shop", "x"))
                .unwrap()
        )
        .await,
        401
    );

    // The endpoint fails, then serves garbage: the last good keys stay.
    endpoint.set(500, "oops");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(c.log().contains("JWKS refresh failed"), "{}", c.log());
    assert!(c.log().contains("HTTP status 500"), "{}", c.log());
    assert_eq!(reserve_status(&c, &fx.token("b")).await, 201);
    endpoint.set(200, "{\"keys\": 5}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        c.log().contains("do not form a valid trust configuration"),
        "{}",
        c.log()
    );
    assert_eq!(reserve_status(&c, &fx.token("c")).await, 201);

    // Key rotation: the issuer now publishes another key.
    endpoint.set(200, &fx.stranger.jwks_json());
    let stranger_token = fx
        .stranger
        .mint(&mazu_dev_issuer::TokenRequest::new("shop", "rotated"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while reserve_status(&c, &stranger_token).await != 201 {
        assert!(
            Instant::now() < deadline,
            "rotation not picked up:\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(reserve_status(&c, &fx.token("d")).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_bad_jwks_url_stops_the_start() {
    let fx = Fixture::new();
    let (endpoint, addr) = serve_jwks(404, "not here").await;
    let o = run_to_exit(url_args(&fx, addr)).await;
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot fetch the JWKS"), "{err}");
    assert!(err.contains("HTTP status 404"), "{err}");

    endpoint.set(200, "{\"keys\": 5}");
    let o = run_to_exit(url_args(&fx, addr)).await;
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid token trust configuration"), "{err}");

    // Oversized (a JWKS is a few KB; 1 MiB is the limit).
    endpoint.set(200, &" ".repeat(mazu_curator::jwks::MAX_JWKS_BYTES + 1));
    let o = run_to_exit(url_args(&fx, addr)).await;
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("larger than"), "{err}");

    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let o = run_to_exit(url_args(&fx, closed)).await;
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot fetch the JWKS"), "{err}");

    // https:// is refused up front (no TLS in this build), naming the flag.
    let mut args = url_args(&fx, addr);
    args[6] = format!("{DEFAULT_ISSUER_URL}=https://{addr}/jwks;namespaces=*");
    let o = run_to_exit(args).await;
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--issuer"), "{err}");
}
