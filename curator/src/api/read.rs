//! The read endpoints: parameters, CRS, registry (snapshot and delta),
//! openings, proofs and the raw log.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mazu_identity::WorkloadId;
use mazu_log::evidence::{
    CHECKPOINT_HEADER, CHECKPOINT_SIZE_HEADER, CONSISTENCY_HEADER, encode_note, encode_proof,
};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::etag::{etag, if_none_match, not_modified};
use super::extract::{ApiPath, ApiQuery};
use super::views::{DeltaJson, LogEntryJson, LogJson, OpeningJson, ProofJson, SnapshotJson};

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

/// `?since=V&format=binary|json`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistryQuery {
    since: Option<u64>,
    format: Option<String>,
}

/// `GET /v1/registry[?since=V][&format=binary|json]` (default binary): the
/// full snapshot, or the delta from version `since`.
///
/// Every 200 carries the log's evidence (`mazu_log::evidence`):
/// `Mazu-Checkpoint`, the signed checkpoint at the answer's version, which
/// binds the snapshot of that version; and, when the request says
/// `Mazu-Checkpoint-Size: M` with `M` below the version, `Mazu-Consistency`,
/// the consistency proof from `M`.
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
    let held_size = checkpoint_size(&headers)?;
    // Evidence first: the answer is then built at exactly its version.
    let (version, note, snapshot) = curator.evidence().await?;
    let body = match (q.since, json) {
        (None, false) => snapshot,
        (None, true) => {
            let decoded =
                mazu_identity::RegistrySnapshot::decode(&snapshot).map_err(ApiError::internal)?;
            Bytes::from(
                serde_json::to_vec(&SnapshotJson::from(&decoded)).map_err(ApiError::internal)?,
            )
        }
        (Some(since), _) => {
            let delta = curator.delta(since, version)?;
            if json {
                Bytes::from(
                    serde_json::to_vec(&DeltaJson::from(&delta)).map_err(ApiError::internal)?,
                )
            } else {
                Bytes::from(delta.encode())
            }
        }
    };
    let mut response = tagged(body, json, &version.to_string());
    let evidence = response.headers_mut();
    evidence.insert(CHECKPOINT_HEADER, header_value(&encode_note(&note))?);
    if let Some(held) = held_size.filter(|&held| held < version) {
        let proof = curator.consistency(held, version)?;
        evidence.insert(CONSISTENCY_HEADER, header_value(&encode_proof(&proof))?);
    }
    Ok(response)
}

/// The client's `Mazu-Checkpoint-Size`, if it sent one.
fn checkpoint_size(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(CHECKPOINT_SIZE_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::InvalidParameter(format!(
                "{CHECKPOINT_SIZE_HEADER} must be a tree size (a decimal number)"
            ))
        })
}

/// Base64 is always a valid header value; fail loudly if that ever changes.
fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value).map_err(ApiError::internal)
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
    for (i, entry) in raw.iter().enumerate() {
        if i > 0 && bytes + entry.len() > LOG_MAX_BYTES {
            break;
        }
        bytes += entry.len();
        entries.push(LogEntryJson::new(start + i as u64, entry));
    }
    Ok(Json(LogJson {
        size: size.max(start + entries.len() as u64),
        start,
        entries,
    })
    .into_response())
}
