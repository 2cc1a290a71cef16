//! The API's error type: every refusal has an HTTP status and a stable,
//! machine-readable code, sent as
//! `{"error":{"code":"slot_taken","message":"slot 5 is already registered"}}`.
//!
//! Internal failures are logged with their details; clients get only
//! `internal` and a generic message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error the HTTP API returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not JSON of the expected shape.
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    /// The request has no `Content-Type: application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is larger than the configured limit.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A field decoded but its value is invalid (bad base64, wrong length).
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The JSON field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A query parameter or path segment is invalid.
    #[error("invalid request parameter: {0}")]
    InvalidParameter(String),
    /// The token was refused; `code` is the identity crate's stable name
    /// (`token_expired`, `token_wrong_audience`, `token_unknown_kid`, ...).
    #[error("token refused: {message}")]
    Token {
        /// Stable snake_case reason.
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// The RBE registration's id is not the request's id.
    #[error("registration.id is not the request's id")]
    IdMismatch,
    /// The revealed token's SHA-256 is not the id it is revealed for.
    #[error("SHA-256 of the token is not the id")]
    TokenIdMismatch,
    /// This workload id is already bound (first binding wins).
    #[error("id already bound{}", .slot.map(|s| format!(" in slot {s}")).unwrap_or_default())]
    AlreadyRegistered {
        /// The slot it holds, while it holds one.
        slot: Option<u32>,
    },
    /// A reveal for an id that has no binding.
    #[error("id is not bound; bind it first (POST /v1/bindings)")]
    NotBound,
    /// The id's binding has ended (released or revoked).
    #[error("the id's binding has ended; it can never be bound or revealed again")]
    BindingEnded,
    /// A range starts beyond the log.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// No checkpoint covering the entry reached the witness quorum in time.
    /// The entry is logged: the identical request retried later answers
    /// with it once witnessed.
    #[error(
        "the entry is logged (index {index}) but no checkpoint covering it has the witness \
         quorum yet; retry the identical request later"
    )]
    WitnessUnavailable {
        /// The entry's log index.
        index: u64,
        /// Seconds to wait before retrying.
        retry_after_secs: u64,
    },
    /// No witnessed checkpoint exists yet.
    #[error("no checkpoint has the witness quorum yet; retry later")]
    NoWitnessedCheckpoint,
    /// A token with the same signed content (claims digest) is already
    /// registered: a re-encoded copy of a registered token.
    #[error("a token with the same signed content is already registered")]
    TokenAlreadyRegistered,
    /// The slot already holds a key.
    #[error("slot {0} is already registered")]
    SlotTaken(u32),
    /// The slot is reserved for another id.
    #[error("slot {0} is reserved for another id")]
    SlotReserved(u32),
    /// The slot is not below the capacity.
    #[error("slot {slot} out of range (capacity {capacity})")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// The capacity.
        capacity: u32,
    },
    /// The token's namespace already has its quota of live registrations.
    #[error(
        "namespace {namespace} already has {quota} live registrations (its quota); \
         one must be released or expire first"
    )]
    NamespaceQuota {
        /// The namespace.
        namespace: String,
        /// Its quota.
        quota: usize,
    },
    /// Every slot is registered or reserved.
    #[error(
        "no free slot: every slot is registered or reserved{}",
        .retry_after_secs.map(|s| format!("; the next binding's release is due in about {s} s")).unwrap_or_default()
    )]
    RegistryFull {
        /// When the curator's next release (reveal window, expiry) is due,
        /// if one is.
        retry_after_secs: Option<u64>,
    },
    /// The RBE registration does not decode.
    #[error("invalid RBE registration: {0}")]
    InvalidRegistration(String),
    /// The RBE registration carries the wrong number of helper values.
    #[error("wrong number of helper values: {0}")]
    HelperCount(String),
    /// The helper values fail the batched pairing check.
    #[error("helper values are not well-formed for this key and slot")]
    InvalidHelpers,
    /// The proof of knowledge of the RBE secret key does not verify.
    #[error("proof of knowledge of the RBE secret key is invalid")]
    InvalidProofOfKnowledge,
    /// The RBE public key is the identity element.
    #[error("RBE public key is the identity element")]
    IdentityPublicKey,
    /// `tls_spki` is not a supported, valid key.
    #[error("invalid TLS key: {0}")]
    InvalidTlsKey(String),
    /// `tls_signature` does not verify over the proof-of-possession message.
    #[error("{0}")]
    BadTlsSignature(String),
    /// A release or revocation whose signature does not verify with the
    /// bound TLS key.
    #[error("the signature does not verify with the bound TLS key: {0}")]
    BadHolderSignature(String),
    /// No such route.
    #[error("no such endpoint")]
    NotFound,
    /// The route exists but not for this method.
    #[error("method not allowed for this endpoint")]
    MethodNotAllowed,
    /// The id is not registered.
    #[error("id not registered (registry version {version})")]
    UnknownId {
        /// The registry version the answer is for.
        version: u64,
    },
    /// `since` is later than the current version.
    #[error("since={since} is ahead of the current version {version}")]
    VersionAhead {
        /// Requested version.
        since: u64,
        /// Current version.
        version: u64,
    },
    /// Too many registration requests from this client.
    #[error("too many requests from this client; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request will be accepted.
        retry_after_secs: u64,
    },
    /// The service is at its concurrency or queue limit.
    #[error("the curator is overloaded; retry later")]
    Overloaded,
    /// The request took longer than the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// The log has not been replayed yet.
    #[error("the curator is starting (replaying its log); retry shortly")]
    NotReady,
    /// The log could not be written; nothing was changed.
    #[error("the registration log cannot be written; nothing was changed")]
    StorageUnavailable,
    /// The background check of the state snapshot's log prefix refuted
    /// the state restored from it: nothing is served from it.
    #[error(
        "the state this curator restored from its snapshot is not the log's (see its log); it \
         serves nothing until restarted"
    )]
    StateRefuted,
    /// An unexpected failure (details are logged, not sent).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedBody(_) => "malformed_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::InvalidField { .. } => "invalid_field",
            Self::InvalidParameter(_) => "invalid_parameter",
            Self::Token { code, .. } => code,
            Self::IdMismatch => "id_mismatch",
            Self::TokenIdMismatch => "token_id_mismatch",
            Self::AlreadyRegistered { .. } => "already_registered",
            Self::NotBound => "unknown_id",
            Self::BindingEnded => "binding_ended",
            Self::OutOfRange(_) => "out_of_range",
            Self::WitnessUnavailable { .. } | Self::NoWitnessedCheckpoint => "witness_unavailable",
            Self::TokenAlreadyRegistered => "token_already_registered",
            Self::SlotTaken(_) => "slot_taken",
            Self::SlotReserved(_) => "slot_reserved",
            Self::SlotOutOfRange { .. } => "slot_out_of_range",
            Self::RegistryFull { .. } => "registry_full",
            Self::NamespaceQuota { .. } => "namespace_quota",
            Self::InvalidRegistration(_) => "invalid_registration",
            Self::HelperCount(_) => "helper_count",
            Self::InvalidHelpers => "invalid_helpers",
            Self::InvalidProofOfKnowledge => "invalid_proof_of_knowledge",
            Self::IdentityPublicKey => "identity_public_key",
            Self::InvalidTlsKey(_) => "invalid_tls_key",
            Self::BadTlsSignature(_) => "bad_tls_signature",
            Self::BadHolderSignature(_) => "bad_holder_signature",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnknownId { .. } => "unknown_id",
            Self::VersionAhead { .. } => "version_ahead",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::NotReady => "not_ready",
            Self::StorageUnavailable => "storage_unavailable",
            Self::StateRefuted => "state_refuted",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedBody(_)
            | Self::InvalidField { .. }
            | Self::InvalidParameter(_)
            | Self::InvalidRegistration(_)
            | Self::InvalidTlsKey(_)
            | Self::TokenIdMismatch
            | Self::OutOfRange(_)
            | Self::VersionAhead { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Token { .. } => StatusCode::UNAUTHORIZED,
            Self::BadHolderSignature(_) => StatusCode::FORBIDDEN,
            Self::IdMismatch
            | Self::SlotOutOfRange { .. }
            | Self::HelperCount(_)
            | Self::InvalidHelpers
            | Self::InvalidProofOfKnowledge
            | Self::IdentityPublicKey
            | Self::BadTlsSignature(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::AlreadyRegistered { .. }
            | Self::TokenAlreadyRegistered
            | Self::SlotTaken(_)
            | Self::SlotReserved(_)
            | Self::BindingEnded
            | Self::RegistryFull { .. }
            | Self::NamespaceQuota { .. } => StatusCode::CONFLICT,
            Self::NotFound | Self::UnknownId { .. } | Self::NotBound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded
            | Self::NotReady
            | Self::StorageUnavailable
            | Self::StateRefuted
            | Self::WitnessUnavailable { .. }
            | Self::NoWitnessedCheckpoint => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An internal failure: logs `detail` and returns [`ApiError::Internal`].
    pub fn internal(detail: impl core::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::Internal
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `code` and `message` of an error response.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        match &self {
            Self::RateLimited { retry_after_secs }
            | Self::RegistryFull {
                retry_after_secs: Some(retry_after_secs),
            }
            | Self::WitnessUnavailable {
                retry_after_secs, ..
            } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Self::Overloaded | Self::NotReady | Self::NoWitnessedCheckpoint => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_code_and_message() {
        let response = ApiError::SlotTaken(5).into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(
            &body[..],
            br#"{"error":{"code":"slot_taken","message":"slot 5 is already registered"}}"#
        );
    }

    #[test]
    fn rate_limit_has_retry_after() {
        let response = ApiError::RateLimited {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn witness_unavailable_is_503_with_retry_after() {
        let response = ApiError::WitnessUnavailable {
            index: 3,
            retry_after_secs: 2,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(ApiError::TokenIdMismatch.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::NotBound.code(), "unknown_id");
    }
}
