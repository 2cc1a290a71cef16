//! Mazu workload certificates: the identity extension, the agent's builder and
//! the filter's parser/checker.

mod builder;
mod error;
mod extension;
mod peer;
mod san;
mod time;

pub use builder::{
    CERTIFICATE_NAME, CertificateRequest, DEFAULT_BACKDATE_SECS, DEFAULT_LIFETIME_SECS,
    IssuedCertificate, build_certificate,
};
pub use error::{BuildError, CertificateError};
pub use extension::{MAZU_IDENTITY_OID, MAZU_IDENTITY_VERSION, MazuIdentity};
pub(crate) use peer::check_validity_window;
pub use peer::{DEFAULT_MAX_CERTIFICATE_LEN, PeerCertificate};
