//! The file output: `cert.pem` and `key.pem` in a directory, each replaced
//! atomically (temporary file, `fsync`, `rename`) so Envoy's file watcher
//! (which reacts to moves) never reads a half-written file. The key is 0600.
//! The key is written first: a reader that sees the new certificate also
//! finds its key (the other order would briefly pair a new certificate with
//! the old key).

use std::path::{Path, PathBuf};

use crate::credentials::ServedCertificate;
use crate::error::StateError;
use crate::state::{SECRET_MODE, write_atomic};

/// Where the certificate and key files go.
#[derive(Clone, Debug)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// Uses `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<CertDir, StateError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StateError::io("creating", &dir, e))?;
        Ok(CertDir { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `key.pem` then `cert.pem`.
    pub fn write(&self, served: &ServedCertificate) -> Result<(), StateError> {
        write_atomic(
            &self.dir.join("key.pem"),
            served.key_pem.as_bytes(),
            SECRET_MODE,
        )?;
        write_atomic(
            &self.dir.join("cert.pem"),
            served.cert_pem.as_bytes(),
            0o644,
        )
    }
}
