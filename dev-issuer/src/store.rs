//! The issuer directory on disk, and atomic file replacement.
//!
//! A directory holds three files:
//!
//! | file          | content                                   | mode |
//! |---------------|-------------------------------------------|------|
//! | `key.pem`     | the private key, PKCS#8 PEM                | 0600 |
//! | `issuer.json` | `{"issuer": URL, "alg": "RS256", "kid": ..}` | 0644 |
//! | `jwks.json`   | the public JWKS                            | 0644 |
//!
//! Every file is replaced atomically (temporary file in the same directory, fsync,
//! rename), so a reader never sees a half-written file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DevIssuer;
use crate::error::{Error, MetadataProblem, Result};
use crate::keys::{Algorithm, IssuerKey};

/// The private key file name.
pub const KEY_FILE: &str = "key.pem";
/// The metadata file name.
pub const METADATA_FILE: &str = "issuer.json";
/// The JWKS file name.
pub const JWKS_FILE: &str = "jwks.json";

/// The content of `issuer.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The issuer URL (`iss`).
    pub issuer: String,
    /// The signing algorithm.
    pub alg: Algorithm,
    /// The key ID (RFC 7638 thumbprint).
    pub kid: String,
}

impl DevIssuer {
    /// Writes `key.pem` (0600), `issuer.json` and `jwks.json` into `dir`, creating
    /// it (0700) if needed and replacing existing files atomically.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        create_dir(dir)?;
        let pem = self.key().to_pkcs8_pem()?;
        write_atomic(&dir.join(KEY_FILE), pem.as_bytes(), 0o600)?;
        let metadata = Metadata {
            issuer: self.issuer_url().to_owned(),
            alg: self.algorithm(),
            kid: self.kid().to_owned(),
        };
        let mut json = serde_json::to_string_pretty(&metadata)?;
        json.push('\n');
        write_atomic(&dir.join(METADATA_FILE), json.as_bytes(), 0o644)?;
        let mut jwks = self.jwks_json();
        jwks.push('\n');
        write_atomic(&dir.join(JWKS_FILE), jwks.as_bytes(), 0o644)
    }

    /// Loads an issuer saved by [`DevIssuer::save`], checking that the recorded
    /// `kid` is the key's thumbprint.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let metadata_path = dir.join(METADATA_FILE);
        let metadata: Metadata = serde_json::from_str(&read(&metadata_path)?)?;
        let key_path = dir.join(KEY_FILE);
        let pem = zeroize::Zeroizing::new(read(&key_path)?);
        let key =
            IssuerKey::from_pkcs8_pem(metadata.alg, &pem).map_err(|source| Error::KeyDecoding {
                path: key_path,
                alg: metadata.alg,
                source,
            })?;
        let issuer = DevIssuer::from_key(key, metadata.issuer);
        if issuer.kid() != metadata.kid {
            return Err(Error::Metadata {
                path: metadata_path,
                problem: MetadataProblem::KidMismatch {
                    recorded: metadata.kid,
                    actual: issuer.kid().to_owned(),
                },
            });
        }
        Ok(issuer)
    }

    /// True if `dir` already holds an issuer key or metadata file.
    pub fn exists_in(dir: impl AsRef<Path>) -> bool {
        let dir = dir.as_ref();
        dir.join(KEY_FILE).exists() || dir.join(METADATA_FILE).exists()
    }
}

/// Replaces `path` atomically with `contents`, created with permission `mode`
/// (on Unix): writes a temporary file in the same directory, fsyncs it, renames
/// it over `path` and fsyncs the directory. A watcher of `path` (like the node
/// agent watching a kubelet-projected token) sees the old or the new file,
/// never a partial one.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io {
            op,
            path: p,
            source,
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut suffix = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut suffix);
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{file_name}.{suffix}.tmp"));

    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp).map_err(io("create", &tmp))?;
        // The umask may have cleared bits of `mode`; set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io("set permissions on", &tmp))?;
        }
        file.write_all(contents).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io("rename into place", path))?;
        // Make the rename durable; not every platform can open a directory.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn create_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| Error::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}
