//! The transparency endpoints: the newest witnessed checkpoint, the
//! curator's verifier key, and Merkle inclusion and consistency proofs over
//! the leaf records (see `docs/protocol.md`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::etag::{etag, if_none_match, not_modified};
use super::extract::ApiQuery;
use super::views::{ConsistencyProofJson, InclusionProofJson};
use crate::checkpoint::TreeError;

const TEXT: &str = "text/plain; charset=utf-8";

fn text(body: String) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    response
}

fn proof_error(e: TreeError) -> ApiError {
    match e {
        TreeError::Proof(e) => ApiError::InvalidParameter(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// `GET /v1/checkpoint`: the newest checkpoint with the witness quorum (C2SP
/// signed note, `text/plain`: origin, size, root, the curator's signature
/// and the witnesses' cosignature lines). `ETag: "<tree size>"`; `503
/// witness_unavailable` until a first checkpoint is witnessed.
pub(super) async fn checkpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let curator = state.curator()?;
    let (size, note) = curator.checkpoint()?;
    let tag = size.to_string();
    if if_none_match(&headers, &tag) {
        return Ok(not_modified(&tag));
    }
    let mut response = text(note);
    response.headers_mut().insert(header::ETAG, etag(&tag));
    Ok(response)
}

/// `GET /v1/checkpoint/key`: the checkpoint verifier key (C2SP note
/// verifier-key format), one line.
pub(super) async fn checkpoint_key(State(state): State<AppState>) -> Result<Response, ApiError> {
    let t = state.curator()?.transparency();
    Ok(text(format!("{}\n", t.verifier_key())))
}

/// `?index=&size=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InclusionQuery {
    index: Option<u64>,
    size: Option<u64>,
}

/// `GET /v1/proofs/inclusion?index=I&size=N` (`size` defaults to the current
/// tree size).
pub(super) async fn inclusion(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Response, ApiError> {
    let index = q
        .index
        .ok_or_else(|| ApiError::InvalidParameter("index is required".into()))?;
    let t = state.curator()?.transparency();
    let size = q.size.unwrap_or_else(|| t.size());
    let (leaf, proof) = t.inclusion(index, size).map_err(proof_error)?;
    Ok(Json(InclusionProofJson {
        index,
        size,
        leaf_hash: hex::encode(leaf),
        proof: proof.iter().map(hex::encode).collect(),
    })
    .into_response())
}

/// `?from=&to=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsistencyQuery {
    from: Option<u64>,
    to: Option<u64>,
}

/// `GET /v1/proofs/consistency?from=M&to=N` (`to` defaults to the current
/// tree size).
pub(super) async fn consistency(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    let from = q
        .from
        .ok_or_else(|| ApiError::InvalidParameter("from is required".into()))?;
    let t = state.curator()?.transparency();
    let to = q.to.unwrap_or_else(|| t.size());
    let (_, _, proof) = t.consistency(from, to).map_err(proof_error)?;
    Ok(Json(ConsistencyProofJson {
        from,
        to,
        proof: proof.iter().map(hex::encode).collect(),
    })
    .into_response())
}
