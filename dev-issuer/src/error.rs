//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The requested RSA modulus size is outside what this crate generates.
    #[error("unsupported RSA modulus size {0} bits (allowed: 1024..=8192, a multiple of 8)")]
    RsaBits(usize),
    /// RSA key generation failed.
    #[error("RSA key generation failed")]
    RsaKeygen(#[source] rsa::Error),
    /// The private key could not be encoded as PKCS#8 PEM.
    #[error("cannot encode the private key as PKCS#8 PEM")]
    KeyEncoding(#[source] rsa::pkcs8::Error),
    /// The private key file is not a PKCS#8 PEM key of the expected algorithm.
    #[error("{} is not a PKCS#8 PEM {alg} private key", path.display())]
    KeyDecoding {
        /// The key file.
        path: PathBuf,
        /// The algorithm the metadata file names.
        alg: crate::Algorithm,
        /// The underlying error.
        #[source]
        source: rsa::pkcs8::Error,
    },
    /// The metadata file is inconsistent with the key next to it.
    #[error("{}: {problem}", path.display())]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong.
        problem: MetadataProblem,
    },
    /// A JSON document could not be parsed or produced.
    #[error("invalid JSON")]
    Json(#[from] serde_json::Error),
    /// An algorithm name other than `RS256` or `ES256`.
    #[error("unknown algorithm {0:?} (expected RS256 or ES256)")]
    UnknownAlgorithm(String),
    /// A token is not three base64url parts separated by dots.
    #[error("malformed token: {0}")]
    MalformedToken(&'static str),
}

/// How an issuer directory's metadata disagrees with its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataProblem {
    /// The `kid` recorded in the metadata is not the key's RFC 7638 thumbprint.
    #[error("kid {recorded:?} does not match the key's thumbprint {actual:?}")]
    KidMismatch {
        /// The kid in the metadata file.
        recorded: String,
        /// The thumbprint of the key on disk.
        actual: String,
    },
}

/// Shorthand for results with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
