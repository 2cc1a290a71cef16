//! `/healthz`, `/readyz`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::views::HealthJson;

/// The warning /readyz carries with a development CRS.
pub const DEV_CRS_WARNING: &str = "INSECURE development CRS: a single party knew its secret; \
    whoever did can decrypt and forge openings. Never use it outside local demos.";

/// `GET /healthz`: the process is up and serving HTTP (200 even while the
/// log is being replayed).
pub(super) async fn healthz(State(state): State<AppState>) -> Json<HealthJson> {
    Json(HealthJson {
        status: "ok".into(),
        version: state.curator().ok().map(|c| c.version()),
        dev_crs: state.dev_crs(),
        warnings: Vec::new(),
    })
}

/// `GET /readyz`: 200 once the log is replayed and the log can be written;
/// 503 before (`starting`) or after a storage failure (`unavailable`).
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let mut warnings = Vec::new();
    if state.dev_crs() {
        warnings.push(DEV_CRS_WARNING.to_owned());
    }
    let (status, code, version) = match state.curator_any() {
        None => ("starting", StatusCode::SERVICE_UNAVAILABLE, None),
        Some(c) if c.refuted().is_some() => {
            warnings.push(format!(
                "the state restored from the snapshot is not the log's ({}); restart the curator \
                 (the next start replays the whole log)",
                c.refuted().unwrap_or_default()
            ));
            (
                "refuted",
                StatusCode::SERVICE_UNAVAILABLE,
                Some(c.version()),
            )
        }
        Some(c) if !c.is_healthy() => {
            warnings.push("the registration log cannot be written; restart the curator".into());
            (
                "unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                Some(c.version()),
            )
        }
        Some(c) => ("ok", StatusCode::OK, Some(c.version())),
    };
    state.metrics().ready.set(i64::from(code == StatusCode::OK));
    (
        code,
        Json(HealthJson {
            status: status.into(),
            version,
            dev_crs: state.dev_crs(),
            warnings,
        }),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text exposition (OpenMetrics flavour).
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(c) = state.curator() {
        state
            .metrics()
            .log_entries
            .set(i64::try_from(c.version()).unwrap_or(i64::MAX));
    }
    let mut response = state.metrics().encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
