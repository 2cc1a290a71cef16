//! One error type for callers that handle every failure of this crate alike.

use crate::certificate::{BuildError, CertificateError};
use crate::jwks::JwksError;
use crate::jwt::TokenError;
use crate::registry::RegistryError;
use crate::spiffe::SpiffeIdError;
use crate::trust::ConfigError;
use crate::verdict::DenyReason;

/// Any error of this crate, wrapping the typed per-module errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A JWKS document was refused.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// A trust configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A peer certificate was refused.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// A certificate could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A SPIFFE ID or trust domain was refused.
    #[error(transparent)]
    SpiffeId(#[from] SpiffeIdError),
    /// A registry snapshot or delta was refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A peer was denied.
    #[error(transparent)]
    Denied(#[from] DenyReason),
}
