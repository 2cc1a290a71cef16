//! Every reason a connection is denied, each with a stable name.

use crate::certificate::CertificateError;
use crate::jwt::TokenError;
use crate::spiffe::SpiffeIdError;

/// Why a peer was denied. [`DenyReason::as_str`] is flat: a certificate or
/// token reason reports its own name (`certificate_*`, `token_*`), so every
/// check has exactly one metrics label. Renaming one is a breaking change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DenyReason {
    /// The certificate is unreadable, malformed, or outside its validity.
    #[error("certificate: {0}")]
    Certificate(CertificateError),
    /// The token in the certificate does not verify.
    #[error("token: {0}")]
    Token(TokenError),
    /// SHA-256 of the token differs from the workload ID in the extension.
    #[error("workload ID in the extension is not SHA-256 of the token")]
    WorkloadIdMismatch,
    /// The certificate's `notAfter` is later than the token's `exp` (plus skew):
    /// a certificate must not outlive the identity proof it carries.
    #[error("certificate outlives its token")]
    CertificateOutlivesToken,
    /// The token's namespace or service account cannot form a SPIFFE ID.
    #[error("token's namespace or service account is not a valid SPIFFE path segment: {0}")]
    InvalidTokenIdentity(SpiffeIdError),
    /// The certificate's URI SAN is not the SPIFFE ID that the token's claims
    /// and the configured trust domain give.
    #[error("certificate SPIFFE ID does not match the token")]
    SpiffeIdMismatch,
    /// The workload ID is not in the registry.
    #[error("workload ID not registered")]
    NotRegistered,
    /// The registration was revoked.
    #[error("registration revoked")]
    Revoked,
    /// The registered token expiry has passed.
    #[error("registration expired")]
    RegistrationExpired,
    /// The registered TLS key is not this certificate's key: someone else
    /// holds the token (stolen token, attacker's key).
    #[error("certificate key is not the registered key")]
    KeyMismatch,
}

impl DenyReason {
    /// A stable snake_case name for metrics labels and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Certificate(e) => e.as_str(),
            Self::Token(e) => e.as_str(),
            Self::WorkloadIdMismatch => "workload_id_mismatch",
            Self::CertificateOutlivesToken => "certificate_outlives_token",
            Self::InvalidTokenIdentity(_) => "token_identity_invalid",
            Self::SpiffeIdMismatch => "spiffe_id_mismatch",
            Self::NotRegistered => "not_registered",
            Self::Revoked => "revoked",
            Self::RegistrationExpired => "registration_expired",
            Self::KeyMismatch => "key_mismatch",
        }
    }
}

impl From<CertificateError> for DenyReason {
    fn from(err: CertificateError) -> Self {
        Self::Certificate(err)
    }
}

impl From<TokenError> for DenyReason {
    fn from(err: TokenError) -> Self {
        Self::Token(err)
    }
}
