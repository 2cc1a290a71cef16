//! `POST /v1/slots` and `POST /v1/registrations`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::json::ApiJson;
use super::views::{RegistrationJson, SlotJson};
use crate::register::{RegistrationRequest, SlotRequest};

/// `POST /v1/slots {token}`: 201 with a new reservation, 200 with the
/// existing one for the same token.
pub(super) async fn slots(
    State(state): State<AppState>,
    body: Result<ApiJson<SlotRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let result = async {
        let ApiJson(request) = body?;
        state.curator()?.reserve_slot(&request.token)
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

/// `POST /v1/registrations`: 201 with the log index, the new version and the
/// entry.
pub(super) async fn registrations(
    State(state): State<AppState>,
    body: Result<ApiJson<RegistrationRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let request = match body {
        Ok(ApiJson(r)) => r,
        Err(e) => {
            state.metrics().refuse(e.code());
            return Err(e);
        }
    };
    let curator = state.curator()?;
    let committed = curator.register(request).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegistrationJson::from(&committed)),
    )
        .into_response())
}
