//! A JSON body extractor whose rejections use the API's error format.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Like [`axum::Json`], but a missing content type, an oversized body or
/// malformed JSON becomes an [`ApiError`] (`unsupported_media_type`,
/// `body_too_large`, `malformed_body`).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// The body limit a request runs under (set by the router next to
/// `DefaultBodyLimit`, so that the error message can name it).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// How long reading a request body may take (set by the router): a slow
/// body is refused (408 `timeout`) rather than holding its place.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub core::time::Duration);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(0, |BodyLimit(n)| *n);
        let timeout = req
            .extensions()
            .get::<BodyReadTimeout>()
            .map(|BodyReadTimeout(t)| *t);
        let read = axum::Json::<T>::from_request(req, state);
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| ApiError::Timeout)?,
            None => read.await,
        };
        match result {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(map_rejection(&rejection, limit)),
        }
    }
}

fn map_rejection(rejection: &JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        JsonRejection::JsonDataError(e) => ApiError::MalformedBody(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::MalformedBody(e.body_text()),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::BodyTooLarge { limit }
        }
        other => ApiError::MalformedBody(other.body_text()),
    }
}
