//! The HTTP API: [`app`] builds the router from an [`AppState`].
//!
//! Layers, outermost first: panic catcher (500 `internal`), request tracing,
//! latency metrics per route; then, for `/v1` only: load shedding in front of
//! a per-client cap on requests in progress and a global concurrency limit
//! (503 `overloaded`), a whole-request timeout and a body-read timeout
//! (408 `timeout`), the body size limit (413 `body_too_large`) and, on the
//! POST routes (slots, bindings, reveals, releases, revocations), the per-client rate limit
//! (429 `rate_limited`). `/healthz`,
//! `/readyz` and `/metrics` bypass the limits so that probes and scrapes keep
//! working under load.

pub mod error;
pub mod etag;
pub mod extract;
pub mod json;
mod ops;
mod read;
mod transparency;
pub mod views;
mod write;

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::config::LimitsConfig;
use crate::limits::RateLimiter;
use crate::metrics::{Metrics, RouteLabels};
use crate::service::Curator;
use error::ApiError;
use json::BodyLimit;

/// Shared state of every handler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    curator: OnceLock<Arc<Curator>>,
    metrics: Arc<Metrics>,
    limiter: RateLimiter,
    in_flight: mazu_service::http::PerClient,
    limits: LimitsConfig,
    dev_crs: bool,
}

impl AppState {
    /// A state that is not ready yet (the log is still being replayed).
    pub fn new(metrics: Arc<Metrics>, limits: LimitsConfig, dev_crs: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                curator: OnceLock::new(),
                limiter: RateLimiter::new(limits.rate_limit_per_minute, limits.rate_limit_burst),
                in_flight: mazu_service::http::PerClient::new(limits.max_requests_per_client),
                metrics,
                limits,
                dev_crs,
            }),
        }
    }

    /// A ready state around an opened curator.
    pub fn with_curator(
        curator: Arc<Curator>,
        metrics: Arc<Metrics>,
        limits: LimitsConfig,
    ) -> Self {
        let state = Self::new(metrics, limits, curator.dev_crs());
        state.set_ready(curator);
        state
    }

    /// Installs the curator once the log is replayed: the service is ready.
    pub fn set_ready(&self, curator: Arc<Curator>) {
        if self.inner.curator.set(curator).is_ok() {
            self.inner.metrics.ready.set(1);
        }
    }

    /// The curator, or `not_ready` while the log is being replayed, or
    /// `state_refuted` once the background check of the snapshot's prefix
    /// refuted the state it restored (nothing is served from it).
    pub fn curator(&self) -> Result<&Arc<Curator>, ApiError> {
        let curator = self.inner.curator.get().ok_or(ApiError::NotReady)?;
        if curator.refuted().is_some() {
            return Err(ApiError::StateRefuted);
        }
        Ok(curator)
    }

    /// The curator, refuted or not (the probes report on it).
    pub(crate) fn curator_any(&self) -> Option<&Arc<Curator>> {
        self.inner.curator.get()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the CRS is an insecure development CRS.
    pub fn dev_crs(&self) -> bool {
        self.inner.dev_crs
    }
}

/// Builds the router (see the [module docs](self) for the layers).
pub fn app(state: AppState) -> Router {
    let limits = state.inner.limits.clone();
    let writes = Router::new()
        .route("/v1/slots", post(write::slots))
        .route("/v1/bindings", post(write::bindings))
        .route("/v1/bindings/{id}/reveal", post(write::reveal))
        .route("/v1/bindings/{id}/release", post(write::release))
        .route("/v1/bindings/{id}/revoke", post(write::revoke))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit));
    let v1 = Router::new()
        .merge(writes)
        .route("/v1/params", get(read::params))
        .route("/v1/crs", get(read::crs))
        .route("/v1/registry", get(read::registry))
        .route("/v1/openings/{slot}", get(read::opening))
        .route("/v1/proofs/{id}", get(read::proof))
        .route("/v1/log", get(read::log))
        .route("/v1/log/records", get(read::records))
        .route("/v1/log/state", get(read::state))
        .route("/v1/checkpoint", get(transparency::checkpoint))
        .route("/v1/checkpoint/key", get(transparency::checkpoint_key))
        .route("/v1/proofs/inclusion", get(transparency::inclusion))
        .route("/v1/proofs/consistency", get(transparency::consistency))
        .layer(axum::Extension(BodyLimit(limits.max_body_bytes)))
        .layer(axum::Extension(json::BodyReadTimeout(
            limits.body_read_timeout,
        )))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(layer_error))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(
                    limits.max_concurrent_requests,
                ))
                .timeout(limits.request_timeout),
        )
        // Outermost of the /v1 limits: a client over its share is refused
        // before it takes a place of the global limit.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            per_client_in_flight,
        ));
    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    Router::new()
        .merge(v1)
        .merge(ops)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), track_latency))
        .layer(
            // Refusals are answers, not failures: log them at debug level
            // (internal errors are logged where they happen).
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn core::any::Any + Send>| {
                ApiError::internal("handler panicked").into_response()
            },
        ))
        .with_state(state)
}

/// Errors from the tower layers (timeout, load shedding) as API errors.
async fn layer_error(err: tower::BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded
    } else {
        ApiError::internal(format!("middleware error: {err}"))
    }
}

/// Records the request latency under its route pattern.
async fn track_latency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    state
        .metrics()
        .http
        .get_or_create(&RouteLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The per-client rate limit of the write endpoints.
/// The client address of a request (unspecified if unknown: in-process
/// tests without connection info share one bucket).
fn client_of(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(addr)| {
            addr.ip()
        })
}

/// Caps the /v1 requests one client has in progress (503 `overloaded`).
async fn per_client_in_flight(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = client_of(&req);
    let Some(_place) = state.inner.in_flight.enter(client) else {
        state.metrics().refuse("client_overloaded");
        tracing::debug!(%client, "too many requests in progress from this client");
        return ApiError::Overloaded.into_response();
    };
    next.run(req).await
}

async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = client_of(&req);
    if let Err(wait) = state.inner.limiter.check(client, Instant::now()) {
        let err = ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        };
        if req.uri().path() == "/v1/slots" {
            state.metrics().reservation(err.code());
        } else {
            state.metrics().refuse(err.code());
        }
        return err.into_response();
    }
    next.run(req).await
}
