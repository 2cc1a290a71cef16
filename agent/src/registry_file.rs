//! Handing the handshake validator its registry: the file
//! (`mazu_validator::registry_file`) written from the witnessed log this
//! agent followed.
//!
//! After each checkpoint the agent accepted and followed, the file is
//! written (atomically) if its registry changed, and its modification time
//! set to the checkpoint's witnessed time (the quorum-th newest cosignature:
//! when the witnesses last vouched for this log). The validator refuses
//! every peer once that time is older than its `max_registry_age_ms`, as a
//! filter does past `max_staleness_secs`: a frozen curator, unreachable
//! witnesses or an agent that stopped verifying make the handshake fail
//! closed, not stay open on an old registry.
//!
//! Several agents of one node may share the file (node mode): the file only
//! moves forward. An agent behind the log size already in the file leaves it
//! alone, so a slower agent never puts back a registry from before a
//! revocation.

use std::io::Read as _;
use std::path::Path;
use std::time::SystemTime;

use mazu_identity::RegistrySnapshot;
use mazu_validator::RegistryFile;
use mazu_validator::registry_file::REGISTRY_FILE_MAGIC;

use crate::error::StateError;
use crate::state::write_atomic;

/// What [`publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// A new registry was written.
    Written,
    /// The file already held this log size: its time moved forward.
    Refreshed,
    /// The file holds a later log size (another agent is ahead): untouched.
    Behind,
}

/// The log size of the registry file at `path`, if it is one.
fn size_in_file(path: &Path) -> Option<u64> {
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .ok()?;
    if header[..8] != REGISTRY_FILE_MAGIC {
        return None;
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&header[8..]);
    Some(u64::from_be_bytes(size))
}

/// Sets the file's modification time to `verified_at` unless it is later
/// already (node mode: another agent saw a newer cosignature).
fn move_time_forward(path: &Path, verified_at: SystemTime) -> std::io::Result<()> {
    let file = std::fs::File::options().append(true).open(path)?;
    if file.metadata()?.modified()? < verified_at {
        file.set_modified(verified_at)?;
    }
    Ok(())
}

/// Publishes the registry derived at `log_size` to `path`, vouched for by
/// the witnesses at `verified_at`.
pub fn publish(
    path: &Path,
    log_size: u64,
    verified_at: SystemTime,
    registry: impl FnOnce() -> RegistrySnapshot,
) -> Result<Published, StateError> {
    match size_in_file(path) {
        Some(held) if held > log_size => return Ok(Published::Behind),
        // Same log size: only the time moves (rewritten if that fails).
        Some(held) if held == log_size && move_time_forward(path, verified_at).is_ok() => {
            return Ok(Published::Refreshed);
        }
        _ => {}
    }
    let file = RegistryFile {
        log_size,
        registry: registry(),
    };
    write_atomic(path, &file.encode(), 0o644)?;
    std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|file| file.set_modified(verified_at))
        .map_err(|e| StateError::io("setting the time of", path, e))?;
    Ok(Published::Written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn the_file_only_moves_forward_and_carries_the_witnessed_time() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("registry");
        let empty = || RegistrySnapshot::from_entries(0, Vec::new()).expect("empty");
        let modified = || {
            std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .expect("mtime")
        };
        let t0 = SystemTime::now() - Duration::from_secs(120);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            publish(&path, 4, t0, empty).expect("write"),
            Published::Written
        );
        assert_eq!(
            modified(),
            t0,
            "the witnessed time, not the time of writing"
        );
        assert_eq!(
            publish(&path, 4, t1, empty).expect("refresh"),
            Published::Refreshed
        );
        assert_eq!(modified(), t1);
        // An older cosignature (another agent behind) does not move it back.
        assert_eq!(
            publish(&path, 4, t0, empty).expect("older"),
            Published::Refreshed
        );
        assert_eq!(modified(), t1);
        assert_eq!(
            publish(&path, 3, t1, empty).expect("behind"),
            Published::Behind
        );
        assert_eq!(size_in_file(&path), Some(4));
        assert_eq!(
            publish(&path, 6, t1, empty).expect("ahead"),
            Published::Written
        );
        let decoded = RegistryFile::decode(&std::fs::read(&path).expect("read")).expect("valid");
        assert_eq!(decoded.log_size, 6);
    }
}
