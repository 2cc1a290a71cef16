//! The registry as the validator holds it: one copy per Envoy process, read
//! from the agent's registry file and re-read only when the file was
//! replaced.
//!
//! The file is looked at (one `stat`) at most every `recheck_interval`; it is
//! decoded again only when its identity (device, inode, length) changed, which
//! every atomic replacement does. Its modification time is the last time the
//! agent verified a witnessed checkpoint: past `max_registry_age` the
//! registry is refused, and so is every peer.

use core::time::Duration;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use crate::registry_file::{RegistryFile, RegistryFileError};

/// Why there is no registry to decide with (every peer is then refused).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceError {
    /// The file cannot be read (not written yet, or removed).
    #[error("registry file unreadable: {0}")]
    Unreadable(String),
    /// The file is damaged.
    #[error("registry file refused: {0}")]
    Damaged(RegistryFileError),
    /// The agent has not verified the log for longer than allowed.
    #[error("registry last verified {age_ms} ms ago (limit {limit_ms} ms)")]
    Stale {
        /// How long ago.
        age_ms: u64,
        /// The configured limit.
        limit_ms: u64,
    },
}

impl SourceError {
    /// A stable snake_case name for logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "registry_unreadable",
            Self::Damaged(_) => "registry_damaged",
            Self::Stale { .. } => "registry_stale",
        }
    }
}

/// What identifies one version of the file: replaced files differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    length: u64,
}

struct Held {
    /// When the file was last looked at.
    looked_at: Option<Instant>,
    /// The version held, and its registry.
    loaded: Option<(FileIdentity, Arc<RegistryFile>)>,
    /// The file's modification time at the last look.
    verified_at: Option<SystemTime>,
    /// Why the last look found nothing usable.
    error: Option<SourceError>,
}

/// The registry file, re-read when replaced.
pub struct RegistrySource {
    path: PathBuf,
    max_age: Duration,
    recheck: Duration,
    held: Mutex<Held>,
}

impl RegistrySource {
    /// Reads `path` on first use.
    pub fn new(path: PathBuf, max_age: Duration, recheck: Duration) -> Self {
        RegistrySource {
            path,
            max_age,
            recheck,
            held: Mutex::new(Held {
                looked_at: None,
                loaded: None,
                verified_at: None,
                error: None,
            }),
        }
    }

    /// Whether this source reads `path` with these limits (validators of
    /// the same file and limits share one source: `crate::shared`).
    pub fn serves(&self, path: &std::path::Path, max_age: Duration, recheck: Duration) -> bool {
        self.path == path && self.max_age == max_age && self.recheck == recheck
    }

    /// The registry to decide with at `now`, or why there is none.
    pub fn current(&self, now: SystemTime) -> Result<Arc<RegistryFile>, SourceError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.looked_at.is_none_or(|at| at.elapsed() >= self.recheck) {
            self.look(&mut held);
        }
        if let Some(error) = &held.error {
            return Err(error.clone());
        }
        let (Some((_, registry)), Some(verified_at)) = (&held.loaded, held.verified_at) else {
            return Err(SourceError::Unreadable("not read yet".to_owned()));
        };
        // A modification time in the future counts as now.
        let age = now.duration_since(verified_at).unwrap_or(Duration::ZERO);
        if age > self.max_age {
            return Err(SourceError::Stale {
                age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                limit_ms: u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX),
            });
        }
        Ok(registry.clone())
    }

    /// Stats the file; decodes it when it was replaced. A file that cannot
    /// be used drops the registry held: never decide with an old one
    /// because the new one is damaged.
    fn look(&self, held: &mut Held) {
        held.looked_at = Some(Instant::now());
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(e) => return fail(held, SourceError::Unreadable(e.to_string())),
        };
        let identity = FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
            length: metadata.len(),
        };
        let verified_at = metadata.modified().ok();
        if held.loaded.as_ref().is_none_or(|(id, _)| *id != identity) {
            let decoded = std::fs::read(&self.path)
                .map_err(|e| SourceError::Unreadable(e.to_string()))
                .and_then(|bytes| RegistryFile::decode(&bytes).map_err(SourceError::Damaged));
            match decoded {
                Ok(file) => {
                    eprintln!(
                        "mazu-validator: registry loaded from {}: {} registrations at log size {}",
                        self.path.display(),
                        file.registry.len(),
                        file.log_size
                    );
                    held.loaded = Some((identity, Arc::new(file)));
                }
                Err(error) => return fail(held, error),
            }
        }
        held.verified_at = verified_at;
        held.error = None;
    }
}

fn fail(held: &mut Held, error: SourceError) {
    if held.error.as_ref() != Some(&error) {
        eprintln!("mazu-validator: every peer is refused: {error}");
    }
    held.loaded = None;
    held.verified_at = None;
    held.error = Some(error);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mazu_identity::{RegistryEntry, RegistrySnapshot};

    fn write(path: &std::path::Path, log_size: u64) {
        let entry = RegistryEntry {
            workload_id: [1; 32].into(),
            slot: 0,
            spki_hash: [2; 32].into(),
            token_expiry: 2_000_000_000,
            revoked: false,
        };
        let file = RegistryFile {
            log_size,
            registry: RegistrySnapshot::from_entries(log_size, vec![entry]).expect("entries"),
        };
        let temp = path.with_extension("tmp");
        std::fs::write(&temp, file.encode()).expect("write");
        std::fs::rename(&temp, path).expect("rename");
    }

    #[test]
    fn missing_damaged_and_stale_files_give_no_registry() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("registry");
        let source = RegistrySource::new(path.clone(), Duration::from_secs(5), Duration::ZERO);
        let now = SystemTime::now();
        assert!(matches!(
            source.current(now),
            Err(SourceError::Unreadable(_))
        ));

        write(&path, 4);
        assert_eq!(source.current(now).expect("fresh").log_size, 4);
        // Stale once the modification time is older than the limit.
        let later = now + Duration::from_secs(60);
        assert!(matches!(
            source.current(later),
            Err(SourceError::Stale { .. })
        ));

        // A replacement is read; a damaged one drops the registry held.
        write(&path, 6);
        assert_eq!(source.current(SystemTime::now()).expect("new").log_size, 6);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[30] ^= 1;
        std::fs::write(path.with_extension("tmp"), &bytes).expect("write");
        std::fs::rename(path.with_extension("tmp"), &path).expect("rename");
        assert!(matches!(
            source.current(SystemTime::now()),
            Err(SourceError::Damaged(_))
        ));
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(
            source.current(SystemTime::now()),
            Err(SourceError::Unreadable(_))
        ));
    }

    #[test]
    fn the_file_is_not_looked_at_again_within_the_interval() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("registry");
        write(&path, 4);
        let source = RegistrySource::new(
            path.clone(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
        );
        assert_eq!(source.current(SystemTime::now()).expect("read").log_size, 4);
        write(&path, 8);
        assert_eq!(source.current(SystemTime::now()).expect("held").log_size, 4);
    }
}
