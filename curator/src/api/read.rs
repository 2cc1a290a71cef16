//! The read endpoints: parameters, CRS, the derived registry (operators'
//! view), openings, proofs, the raw log and its leaf records.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mazu_identity::WorkloadId;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::etag::{etag, if_none_match, not_modified};
use super::extract::{ApiPath, ApiQuery};
use super::views::{LogEntryJson, LogJson, OpeningJson, ProofJson, SnapshotJson};

const OCTET_STREAM: &str = "application/octet-stream";
const JSON: &str = "application/json";

/// Default and largest page of `GET /v1/log`.
pub const LOG_DEFAULT_LIMIT: usize = 100;
/// Largest `limit` of `GET /v1/log`.
pub const LOG_MAX_LIMIT: usize = 1000;
/// A `GET /v1/log` page stops after this many entry bytes (at least one
/// entry is always returned).
pub const LOG_MAX_BYTES: usize = 8 << 20;

/// `?format=json|binary`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FormatQuery {
    format: Option<String>,
}

/// Parses `format`, with `default_json` when absent.
fn wants_json(format: Option<&str>, default_json: bool) -> Result<bool, ApiError> {
    match format {
        None => Ok(default_json),
        Some("json") => Ok(true),
        Some("binary") => Ok(false),
        Some(other) => Err(ApiError::InvalidParameter(format!(
            "format must be json or binary, not {other:?}"
        ))),
    }
}

/// A body with its content type and entity tag.
fn tagged(bytes: Bytes, json: bool, tag: &str) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if json { JSON } else { OCTET_STREAM }),
    );
    headers.insert(header::ETAG, etag(tag));
    response
}

/// `GET /v1/params[?format=json|binary]` (default JSON).
pub(super) async fn params(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> Result<Response, ApiError> {
    let json = wants_json(q.format.as_deref(), true)?;
    let curator = state.curator()?;
    let current = curator.version().to_string();
    if if_none_match(&headers, &current) {
        return Ok(not_modified(&current));
    }
    let (version, bytes) = curator.params(json).await?;
    Ok(tagged(bytes, json, &version.to_string()))
}

/// `GET /v1/crs[?format=binary|json]` (default binary). ETag: the CRS digest.
pub(super) async fn crs(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> Result<Response, ApiError> {
    let json = wants_json(q.format.as_deref(), false)?;
    let curator = state.curator()?;
    let tag = hex::encode(curator.crs().digest());
    if if_none_match(&headers, &tag) {
        return Ok(not_modified(&tag));
    }
    Ok(tagged(curator.crs_encoded(json), json, &tag))
}

/// `?format=binary|json`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistryQuery {
    format: Option<String>,
}

/// `GET /v1/registry[?format=binary|json]` (default binary): the registry
/// derived from the log's records (live ids, and revoked ones), at the
/// current log size. An operator's convenience, **not evidence**: nothing
/// signs it; verifiers derive the registry themselves from the records of a
/// witnessed checkpoint (`GET /v1/checkpoint`, `GET /v1/log/records`).
pub(super) async fn registry(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<RegistryQuery>,
) -> Result<Response, ApiError> {
    let json = wants_json(q.format.as_deref(), false)?;
    let curator = state.curator()?;
    let current = curator.version().to_string();
    if if_none_match(&headers, &current) {
        return Ok(not_modified(&current));
    }
    let snapshot = curator.snapshot().await?;
    let body = if json {
        let decoded =
            mazu_identity::RegistrySnapshot::decode(&snapshot.bytes).map_err(ApiError::internal)?;
        Bytes::from(serde_json::to_vec(&SnapshotJson::from(&decoded)).map_err(ApiError::internal)?)
    } else {
        snapshot.bytes
    };
    Ok(tagged(body, json, &snapshot.version.to_string()))
}

/// `GET /v1/openings/{slot}`.
pub(super) async fn opening(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(slot): ApiPath<u32>,
) -> Result<Response, ApiError> {
    let curator = state.curator()?;
    let current = curator.version().to_string();
    if if_none_match(&headers, &current) {
        return Ok(not_modified(&current));
    }
    let (version, opening, registered) = curator.opening(slot)?;
    let mut response = Json(OpeningJson {
        version,
        slot,
        registered,
        opening,
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(&version.to_string()));
    Ok(response)
}

/// `GET /v1/proofs/{id}` (id: 64 hex digits).
pub(super) async fn proof(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = WorkloadId::from_hex(&id)
        .map_err(|_| ApiError::InvalidParameter("id must be 64 hexadecimal digits".into()))?;
    let curator = state.curator()?;
    let current = curator.version().to_string();
    if if_none_match(&headers, &current) {
        return Ok(not_modified(&current));
    }
    let (version, slot, proof) = curator.proof(&id)?;
    let mut response = Json(ProofJson {
        version,
        id: hex::encode(id.as_bytes()),
        slot,
        proof,
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(&version.to_string()));
    Ok(response)
}

/// `?start=&limit=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    start: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/log?start=S&limit=L`: raw entries from index `S`.
pub(super) async fn log(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let start = q.start.unwrap_or(0);
    let limit = q.limit.unwrap_or(LOG_DEFAULT_LIMIT);
    if limit == 0 || limit > LOG_MAX_LIMIT {
        return Err(ApiError::InvalidParameter(format!(
            "limit must be 1..={LOG_MAX_LIMIT}"
        )));
    }
    let curator = state.curator()?;
    let (size, raw) = curator.log_range(start, limit).await?;
    let mut entries = Vec::with_capacity(raw.len());
    let mut bytes = 0usize;
    for (i, (entry, record)) in raw.iter().enumerate() {
        if i > 0 && bytes + entry.len() > LOG_MAX_BYTES {
            break;
        }
        bytes += entry.len();
        entries.push(LogEntryJson::new(start + i as u64, entry, record));
    }
    Ok(Json(LogJson {
        size: size.max(start + entries.len() as u64),
        start,
        entries,
    })
    .into_response())
}

/// The header carrying the log size with `GET /v1/log/records`.
pub const LOG_SIZE_HEADER: &str = "Mazu-Log-Size";

/// `?start=&end=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordsQuery {
    start: Option<u64>,
    end: Option<u64>,
}

/// `GET /v1/log/records?start=S&end=E`: the leaf records
/// `S..min(E, size, S + 16384)` concatenated (`application/octet-stream`,
/// decode with `mazu_log::record::decode_records`), with the log size in
/// `Mazu-Log-Size`. `start` defaults to 0 and `end` to the log size;
/// `end < start` is `invalid_parameter`, `start > size` is `out_of_range`.
pub(super) async fn records(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RecordsQuery>,
) -> Result<Response, ApiError> {
    let start = q.start.unwrap_or(0);
    let end = q.end.unwrap_or(u64::MAX);
    if end < start {
        return Err(ApiError::InvalidParameter(format!(
            "end {end} is below start {start}"
        )));
    }
    let (size, _, bytes) = state.curator()?.records(start, end).await?;
    let mut response = Bytes::from(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    headers.insert(LOG_SIZE_HEADER, HeaderValue::from(size));
    Ok(response)
}

/// `?size=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateQuery {
    size: u64,
}

/// `GET /v1/log/state?size=N`: the registry follower's state after the
/// log's first `N` records (`application/octet-stream`, decode with
/// `mazu_identity::registry::LogFollower::decode_state`), for one of the
/// newest signed checkpoints; `out_of_range` for any other size. Whoever
/// uses it checks its SHA-256 against the `mazu-state-sha256` line of a
/// checkpoint of size `N` that it verified (witness quorum): the curator's
/// word counts for nothing.
pub(super) async fn state(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<StateQuery>,
) -> Result<Response, ApiError> {
    let encoded = state
        .curator()?
        .transparency()
        .state(q.size)
        .ok_or_else(|| {
            ApiError::OutOfRange(format!(
                "no follower state kept for size {}: ask for the size of the latest checkpoint",
                q.size
            ))
        })?;
    let mut response = encoded.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    Ok(response)
}
