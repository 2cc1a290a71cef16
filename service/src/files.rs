//! Durable file writes: atomic replacement (temporary file, fsync, rename,
//! fsync of the directory) and Ed25519 key files (created only on request,
//! never overwritten).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.tmp{}", std::process::id()))
}

/// Fsyncs a directory, so that a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably: a reader (or a
/// restart after a crash) sees the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(&parent_dir(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Why a key file could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file does not exist and creating it was not asked for.
    #[error(
        "the key file {0} does not exist. A service's signing key is its identity (clients pin its \
         verifier key): pass --create-key to generate one for a new deployment, or point to the \
         existing key"
    )]
    Missing(PathBuf),
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not 32 raw bytes or 64 hex digits.
    #[error("key file {0}: not 64 hex digits (or 32 raw bytes)")]
    Format(PathBuf),
}

/// A loaded key and how it was obtained.
#[derive(Debug)]
pub struct LoadedKey {
    /// The Ed25519 secret key (seed).
    pub secret: [u8; 32],
    /// Whether it was generated now.
    pub created: bool,
    /// Whether the file is readable by group or others (unix).
    pub too_open: bool,
}

/// Reads the key from `path`; if it does not exist and `create`, generates a
/// fresh key and writes it (64 hex digits and a newline, mode 0600) to a
/// temporary file, fsyncs it, links it into place only if `path` still does
/// not exist (never overwriting a key), and fsyncs the directory.
pub fn load_or_create_key(path: &Path, create: bool) -> Result<LoadedKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let secret = parse_key(&bytes).ok_or_else(|| KeyError::Format(path.to_path_buf()))?;
            Ok(LoadedKey {
                secret,
                created: false,
                too_open: too_open(path),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(KeyError::Missing(path.to_path_buf()));
            }
            let mut secret = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
            let tmp = temp_path(path);
            let written = (|| {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options.open(&tmp)?;
                f.write_all(format!("{}\n", hex::encode(secret)).as_bytes())?;
                f.sync_all()?;
                // Atomic and never clobbering: fails if the key appeared.
                std::fs::hard_link(&tmp, path)
            })();
            let _ = std::fs::remove_file(&tmp);
            match written {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Another process created it meanwhile: use that one.
                    return load_or_create_key(path, false);
                }
                Err(e) => return Err(io(e)),
            }
            sync_dir(&parent_dir(path)).map_err(io)?;
            Ok(LoadedKey {
                secret,
                created: true,
                too_open: false,
            })
        }
        Err(e) => Err(io(e)),
    }
}

/// A 32-byte key from a key file's bytes: 32 raw bytes, or 64 hex digits
/// with an optional newline.
pub fn parse_key(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(raw);
    }
    let text = core::str::from_utf8(bytes).ok()?.trim_end_matches('\n');
    let decoded = hex::decode(text).ok()?;
    <[u8; 32]>::try_from(decoded.as_slice()).ok()
}

#[cfg(unix)]
fn too_open(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn too_open(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn key_is_created_only_on_request_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(matches!(
            load_or_create_key(&path, false),
            Err(KeyError::Missing(_))
        ));
        let k = load_or_create_key(&path, true).unwrap();
        assert!(k.created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_create_key(&path, true).unwrap();
        assert!(!again.created);
        assert_eq!(again.secret, k.secret);
        assert!(!again.too_open);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, "zz\n").unwrap();
        assert!(matches!(
            load_or_create_key(&path, true),
            Err(KeyError::Format(_))
        ));
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
