//! The HTTP interface: `POST /add-checkpoint` (C2SP tlog-witness),
//! `POST /mazu/v1/add-checkpoint` (the same with the checkpoint's records,
//! for checkpoints with a state line), `GET /healthz`, `GET /metrics`.
//!
//! Layers, outermost first: panic catcher (500), request tracing; on each
//! of the two `add-checkpoint` routes only: load shedding in front of a
//! concurrency limit (503; one limit per route), a whole-request timeout
//! (408) and the body limit (413: the protocol's largest body,
//! `MAX_REQUEST_LEN` or `MAX_WITH_RECORDS_LEN`). Probes and scrapes bypass
//! the limits.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mazu_log::witness_protocol::{
    ADD_CHECKPOINT_PATH, ADD_CHECKPOINT_WITH_RECORDS_PATH, MAX_REQUEST_LEN, MAX_WITH_RECORDS_LEN,
    SIZE_CONTENT_TYPE, encode_size,
};
use serde::Serialize;
use tower::ServiceBuilder;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::metrics::Metrics;
use crate::witness::{AddError, Witness};

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The witness.
    pub witness: Arc<Witness>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
}

/// Limits of `add-checkpoint`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Whole-request timeout.
    pub request_timeout: core::time::Duration,
    /// Concurrency limit.
    pub max_concurrent_requests: usize,
}

/// One `add-checkpoint` route with its limits.
fn limited(
    path: &str,
    handler: axum::routing::MethodRouter<AppState>,
    max_body: usize,
    limits: Limits,
) -> Router<AppState> {
    Router::new()
        .route(path, handler)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(layer_error))
                .load_shed()
                .layer(ConcurrencyLimitLayer::new(limits.max_concurrent_requests))
                .timeout(limits.request_timeout),
        )
}

/// Builds the router.
pub fn app(state: AppState, limits: Limits) -> Router {
    let add = limited(
        ADD_CHECKPOINT_PATH,
        post(add_checkpoint),
        MAX_REQUEST_LEN,
        limits,
    );
    let add_with_records = limited(
        ADD_CHECKPOINT_WITH_RECORDS_PATH,
        post(add_checkpoint_with_records),
        MAX_WITH_RECORDS_LEN,
        limits,
    );
    Router::new()
        .merge(add)
        .merge(add_with_records)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n") })
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn core::any::Any + Send>| {
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            },
        ))
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body.into(),
    )
        .into_response()
}

async fn layer_error(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        text(StatusCode::REQUEST_TIMEOUT, "timeout\n")
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        text(StatusCode::SERVICE_UNAVAILABLE, "overloaded\n")
    } else {
        tracing::error!(error = %err, "middleware error");
        text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
    }
}

/// `POST /add-checkpoint`.
async fn add_checkpoint(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, body, Witness::add_checkpoint).await
}

/// `POST /mazu/v1/add-checkpoint`.
async fn add_checkpoint_with_records(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, body, Witness::add_checkpoint_with_records).await
}

/// Runs `handle` off the async threads (it may fsync) and answers.
async fn run(
    state: AppState,
    body: Bytes,
    handle: fn(&Witness, &[u8]) -> Result<crate::witness::Cosigned, AddError>,
) -> Response {
    let witness = state.witness.clone();
    let result = tokio::task::spawn_blocking(move || handle(&witness, &body)).await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "add-checkpoint task failed");
            Err(AddError::Internal("the request task failed"))
        }
    };
    match result {
        Ok(c) => {
            state.metrics.request(Some(&c.origin), "cosigned");
            state.metrics.set_size(&c.origin, c.size);
            tracing::info!(
                origin = %c.origin,
                old = c.old_size,
                size = c.size,
                advanced = c.advanced,
                outcome = "cosigned",
                "add-checkpoint"
            );
            text(StatusCode::OK, c.body)
        }
        Err(e) => {
            state.metrics.request(e.known_origin(), e.outcome());
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            match &e {
                AddError::Storage(_) | AddError::Internal(_) | AddError::NoFollower { .. } => {
                    tracing::error!(error = %e, outcome = e.outcome(), "add-checkpoint failed");
                }
                AddError::Fork { .. }
                | AddError::BadProof { .. }
                | AddError::BadRecords { .. }
                | AddError::BadState { .. } => {
                    tracing::warn!(error = %e, outcome = e.outcome(), status = e.status(), "add-checkpoint refused");
                }
                _ => {
                    tracing::info!(error = %e, outcome = e.outcome(), status = e.status(), "add-checkpoint refused");
                }
            }
            match e {
                AddError::SizeMismatch { stored, .. } => (
                    StatusCode::CONFLICT,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(SIZE_CONTENT_TYPE),
                    )],
                    encode_size(stored),
                )
                    .into_response(),
                // Internal details stay in the log.
                AddError::Storage(_) | AddError::Internal(_) => text(status, "internal error\n"),
                e => text(status, format!("{e}\n")),
            }
        }
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    name: String,
    vkey: String,
    logs: Vec<LogHealth>,
}

#[derive(Serialize)]
struct LogHealth {
    origin: String,
    size: Option<u64>,
    /// Whether the witness holds the registry follower (verifies state lines).
    follower: bool,
}

/// `GET /healthz`: the witness's name, verifier key and stored sizes.
async fn healthz(State(state): State<AppState>) -> Response {
    let health = Health {
        status: "ok",
        name: state.witness.name().to_owned(),
        vkey: state.witness.vkey(),
        logs: state
            .witness
            .logs()
            .into_iter()
            .map(|l| LogHealth {
                origin: l.origin,
                size: l.size,
                follower: l.follower,
            })
            .collect(),
    };
    axum::Json(health).into_response()
}

/// `GET /metrics`.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
