//! Why a peer certificate was refused, and why one could not be built.

use crate::jwt::TokenError;
use crate::spiffe::SpiffeIdError;

/// Why a peer certificate was refused. Each variant has a stable
/// [`as_str`](CertificateError::as_str) name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The certificate (PEM or DER, as given) is longer than the configured limit.
    #[error("certificate is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// Input looked like PEM but is not exactly one `CERTIFICATE` block.
    #[error("not a single PEM CERTIFICATE block")]
    MalformedPem,
    /// Not a DER X.509 certificate (or trailing bytes after it).
    #[error("not a DER-encoded X.509 certificate")]
    Malformed,
    /// An extension OID appears twice (RFC 5280 §4.2 forbids it).
    #[error("an extension appears more than once")]
    DuplicateExtension,
    /// An extension marked critical that a verifier of this certificate
    /// does not process (RFC 5280 §4.2: the certificate must be rejected).
    /// The Mazu extension itself must not be critical either: TLS stacks
    /// that do not know it (BoringSSL, in Envoy) reject it when critical.
    #[error("critical extension {0} is not one a verifier processes")]
    UnknownCriticalExtension(alloc::string::String),
    /// No Mazu identity extension.
    #[error("no Mazu identity extension")]
    MissingMazuExtension,
    /// The Mazu identity extension appears more than once.
    #[error("Mazu identity extension appears more than once")]
    DuplicateMazuExtension,
    /// The Mazu identity extension is not valid DER of the documented structure.
    #[error("malformed Mazu identity extension")]
    MalformedMazuExtension,
    /// The Mazu identity extension has a version other than 1.
    #[error("unsupported Mazu identity extension version")]
    UnsupportedMazuExtensionVersion,
    /// The subjectAltName extension is not valid DER.
    #[error("malformed subjectAltName extension")]
    MalformedSan,
    /// A SAN string contains a NUL byte.
    #[error("a subjectAltName contains a NUL byte")]
    SanNul,
    /// A SAN string contains a byte outside ASCII.
    #[error("a subjectAltName contains a non-ASCII byte")]
    SanNonAscii,
    /// No URI SAN (or no subjectAltName extension at all).
    #[error("no URI subjectAltName")]
    MissingUriSan,
    /// More than one URI SAN: which one is the identity would be ambiguous.
    #[error("more than one URI subjectAltName")]
    MultipleUriSans,
    /// The URI SAN is not a SPIFFE ID of the workload shape.
    #[error("URI subjectAltName is not a workload SPIFFE ID: {0}")]
    InvalidSpiffeId(SpiffeIdError),
    /// `notAfter` (plus the allowed clock skew) has passed.
    #[error("certificate expired")]
    Expired,
    /// `notBefore` is later than now plus the allowed clock skew.
    #[error("certificate not yet valid")]
    NotYetValid,
}

impl CertificateError {
    /// A stable snake_case name for metrics labels and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "certificate_too_large",
            Self::MalformedPem => "certificate_malformed_pem",
            Self::Malformed => "certificate_malformed",
            Self::DuplicateExtension => "certificate_duplicate_extension",
            Self::UnknownCriticalExtension(_) => "certificate_unknown_critical_extension",
            Self::MissingMazuExtension => "certificate_missing_mazu_extension",
            Self::DuplicateMazuExtension => "certificate_duplicate_mazu_extension",
            Self::MalformedMazuExtension => "certificate_malformed_mazu_extension",
            Self::UnsupportedMazuExtensionVersion => "certificate_mazu_extension_version",
            Self::MalformedSan => "certificate_malformed_san",
            Self::SanNul => "certificate_san_nul",
            Self::SanNonAscii => "certificate_san_non_ascii",
            Self::MissingUriSan => "certificate_missing_uri_san",
            Self::MultipleUriSans => "certificate_multiple_uri_sans",
            Self::InvalidSpiffeId(_) => "certificate_invalid_spiffe_id",
            Self::Expired => "certificate_expired",
            Self::NotYetValid => "certificate_not_yet_valid",
        }
    }
}

/// Why the agent's certificate builder could not build a certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The token's claims could not be read (its signature is not checked here).
    #[error("token unusable: {0}")]
    Token(#[from] TokenError),
    /// The token's namespace or service account cannot form a SPIFFE ID.
    #[error("cannot form a SPIFFE ID: {0}")]
    SpiffeId(#[from] SpiffeIdError),
    /// The token has expired (its `exp` is not after `now`): the certificate
    /// would have an empty validity.
    #[error("token already expired")]
    TokenExpired,
    /// The requested lifetime is zero.
    #[error("certificate lifetime must be positive")]
    ZeroLifetime,
    /// A time does not fit an X.509 time (after 9999).
    #[error("time out of X.509 range")]
    TimeOutOfRange,
    /// DER encoding failed (should not happen for valid inputs).
    #[error("DER encoding failed: {0}")]
    Encoding(der::Error),
}

impl From<der::Error> for BuildError {
    fn from(err: der::Error) -> Self {
        Self::Encoding(err)
    }
}
