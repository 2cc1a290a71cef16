//! `POST /v1/slots`, `POST /v1/bindings`, `POST /v1/bindings/{id}/reveal`,
//! and the holder's `POST /v1/bindings/{id}/release` and `.../revoke`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::extract::ApiPath;
use super::json::ApiJson;
use super::views::{
    BindingRequest, HolderRequest, LoggedJson, RevealRequest, SlotJson, SlotRequest,
};
use crate::holder::HolderAction;
use crate::writer::Logged;

/// `POST /v1/slots {id}`: 201 with a new reservation, 200 with the existing
/// one for the same id.
pub(super) async fn slots(
    State(state): State<AppState>,
    body: Result<ApiJson<SlotRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let result = async {
        let ApiJson(request) = body?;
        state.curator()?.reserve_slot(&request.id)
    }
    .await;
    match result {
        Ok(grant) => {
            state
                .metrics()
                .reservation(if grant.created { "new" } else { "existing" });
            let status = if grant.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(SlotJson::from(&grant))).into_response())
        }
        Err(e) => {
            state.metrics().reservation(e.code());
            Err(e)
        }
    }
}

/// The answer of a bind or reveal: 201 when this request logged the entry,
/// 200 for an identical repeat; with a witnessed checkpoint covering it.
fn logged(logged: Logged, checkpoint: String) -> Response {
    let status = if logged.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(LoggedJson {
            index: logged.index,
            leaf_hash: hex::encode(logged.leaf_hash),
            checkpoint,
        }),
    )
        .into_response()
}

/// `POST /v1/bindings`: binds an id to a TLS key and an RBE key (no token).
pub(super) async fn bindings(
    State(state): State<AppState>,
    body: Result<ApiJson<BindingRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let request = match body {
        Ok(ApiJson(r)) => r,
        Err(e) => {
            state.metrics().refuse(e.code());
            return Err(e);
        }
    };
    let (entry, checkpoint) = state.curator()?.bind(request).await?;
    Ok(logged(entry, checkpoint))
}

/// `POST /v1/bindings/{id}/reveal {token}`: reveals the token of a bound id.
pub(super) async fn reveal(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: Result<ApiJson<RevealRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let request = match body {
        Ok(ApiJson(r)) => r,
        Err(e) => {
            state.metrics().refuse(e.code());
            return Err(e);
        }
    };
    let (entry, checkpoint) = state.curator()?.reveal(&id, request).await?;
    Ok(logged(entry, checkpoint))
}

/// `POST /v1/bindings/{id}/release {signature}`: the holder frees its
/// binding's slot.
pub(super) async fn release(
    state: State<AppState>,
    id: ApiPath<String>,
    body: Result<ApiJson<HolderRequest>, ApiError>,
) -> Result<Response, ApiError> {
    end_by_holder(state, id, body, HolderAction::Release).await
}

/// `POST /v1/bindings/{id}/revoke {signature}`: the holder revokes its
/// binding (peers stop trusting it; the slot is freed).
pub(super) async fn revoke(
    state: State<AppState>,
    id: ApiPath<String>,
    body: Result<ApiJson<HolderRequest>, ApiError>,
) -> Result<Response, ApiError> {
    end_by_holder(state, id, body, HolderAction::Revoke).await
}

async fn end_by_holder(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: Result<ApiJson<HolderRequest>, ApiError>,
    action: HolderAction,
) -> Result<Response, ApiError> {
    let request = match body {
        Ok(ApiJson(r)) => r,
        Err(e) => {
            state.metrics().refuse(e.code());
            return Err(e);
        }
    };
    let (entry, checkpoint) = state.curator()?.end_by_holder(&id, action, request).await?;
    Ok(logged(entry, checkpoint))
}
