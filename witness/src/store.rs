//! The durable table (origin → latest cosigned checkpoint): one small JSON
//! file per log in `DATA_DIR/logs/`, replaced atomically (temporary file,
//! fsync, rename, fsync of the directory), and a lock file that keeps a
//! second witness process off the same directory.
//!
//! File name: the first 16 bytes of `SHA-256(origin)` in hex, `.json`
//! (origins contain `/`). Content:
//!
//! ```json
//! {"origin":"example.org/log","size":42,"root":"<base64>","checkpoint":"<the signed note>","updated_at":1700000000,"follower_state":"<base64>"}
//! ```
//!
//! The stored note is the log-signed checkpoint the witness last cosigned;
//! at start-up it is verified again with the log's key and must match
//! `size` and `root`, so a damaged or edited file stops the witness rather
//! than silently resetting it (which would let it cosign a rollback).
//!
//! `follower_state` (optional) is the registry follower state at `size`
//! (`mazu_identity::registry::LogFollower::encode_state`), which the witness
//! needs to verify a checkpoint's `mazu-state-sha256` line
//! ([`crate::witness`]). **It lives in the same file as the checkpoint on
//! purpose**: one atomic replacement writes both, so no crash can leave a
//! follower of one size beside a checkpoint of another (two files would
//! need an ordering and a recovery rule for every interleaving). The price
//! is rewriting the follower state (proportional to the ids held, not to
//! the log's history) with every new size. Absent: the witness does not
//! hold the follower at `size` (it advanced without records, or the file
//! predates this field). A damaged follower field does not stop the
//! witness (the checkpoint part is what keeps it from cosigning a
//! rollback); the witness then refuses state lines for that log
//! ([`StoredFollower`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding as _};
use mazu_log::checkpoint::CheckpointVerifier;
use mazu_log::merkle::Hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use mazu_service::files::{sync_dir, write_atomic};

/// Subdirectory of the per-log state files.
pub const LOGS_DIR: &str = "logs";
/// Subdirectory of fork evidence.
pub const EVIDENCE_DIR: &str = "evidence";
/// The lock file.
pub const LOCK_FILE: &str = "witness.lock";

/// The latest checkpoint the witness cosigned for one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogState {
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// The log-signed note.
    pub checkpoint: String,
    /// When it was stored (POSIX seconds).
    pub updated_at: u64,
}

/// The follower state stored beside a log's checkpoint, not yet decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredFollower {
    /// The encoded follower state (to decode and check against the
    /// checkpoint's size and root).
    Encoded(Vec<u8>),
    /// None stored.
    Missing,
    /// The field is there but is not base64.
    Unreadable,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    origin: String,
    size: u64,
    root: String,
    checkpoint: String,
    updated_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    follower_state: Option<String>,
}

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error(
        "another mazu-witness holds the lock on {0}: two witnesses must not share a data directory"
    )]
    Locked(PathBuf),
    /// A state file is damaged or does not match its log.
    #[error(
        "state file {path} is invalid ({reason}); refusing to start rather than forget what was cosigned"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A write would have stored a smaller tree than the one on disk.
    #[error("refusing to replace the stored size {stored} of {origin} with the smaller {new}")]
    WouldShrink {
        /// The origin.
        origin: String,
        /// The size on disk.
        stored: u64,
        /// The size offered.
        new: u64,
    },
}

/// The state directory. Holds the lock for as long as it lives.
#[derive(Debug)]
pub struct Store {
    logs: PathBuf,
    evidence: PathBuf,
    _lock: File,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

impl Store {
    /// Opens (creating if needed) the state directory and takes its lock.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let logs = data_dir.join(LOGS_DIR);
        let evidence = data_dir.join(EVIDENCE_DIR);
        for dir in [&logs, &evidence] {
            std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        }
        sync_dir(data_dir).map_err(io("cannot sync", data_dir))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(lock_path)),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io("cannot lock", &lock_path)(e));
            }
        }
        Ok(Self {
            logs,
            evidence,
            _lock: lock,
        })
    }

    /// The state file of `origin`.
    pub fn path(&self, origin: &str) -> PathBuf {
        let digest = Sha256::digest(origin.as_bytes());
        self.logs
            .join(format!("{}.json", hex::encode(&digest[..16])))
    }

    /// Reads the state of the log `log` verifies, re-verifying the stored
    /// checkpoint, and the follower state stored with it; `None` if the
    /// witness never cosigned for it.
    pub fn load(
        &self,
        log: &CheckpointVerifier,
    ) -> Result<Option<(LogState, StoredFollower)>, StoreError> {
        let path = self.path(log.name());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &path)(e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let file: StateFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        if file.origin != log.name() {
            return Err(corrupt(format!("it is the state of {:?}", file.origin)));
        }
        let mut root = [0u8; 32];
        let decoded = Base64::decode(&file.root, &mut root)
            .map_err(|_| corrupt("the root is not base64".into()))?;
        if decoded.len() != 32 {
            return Err(corrupt("the root is not 32 bytes".into()));
        }
        let cp = log
            .verify(file.checkpoint.as_bytes())
            .map_err(|e| corrupt(format!("the stored checkpoint does not verify: {e}")))?;
        if cp.size != file.size || cp.root != root {
            return Err(corrupt(
                "size and root differ from the stored checkpoint".into(),
            ));
        }
        let follower = match &file.follower_state {
            None => StoredFollower::Missing,
            Some(text) => {
                Base64::decode_vec(text).map_or(StoredFollower::Unreadable, StoredFollower::Encoded)
            }
        };
        Ok(Some((
            LogState {
                size: file.size,
                root,
                checkpoint: file.checkpoint,
                updated_at: file.updated_at,
            },
            follower,
        )))
    }

    /// Durably replaces the state of `origin`, with the encoded follower
    /// state at the same size (`None`: the witness does not hold it), in
    /// one atomic write. Refuses to store a smaller size than the one on
    /// disk (the caller's compare-and-swap already ensures it; this is the
    /// last line of defence).
    pub fn save(
        &self,
        origin: &str,
        state: &LogState,
        follower_state: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let path = self.path(origin);
        match std::fs::read(&path) {
            Ok(bytes) => {
                if let Ok(old) = serde_json::from_slice::<StateFile>(&bytes)
                    && old.size > state.size
                {
                    return Err(StoreError::WouldShrink {
                        origin: origin.to_owned(),
                        stored: old.size,
                        new: state.size,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot read", &path)(e)),
        }
        let file = StateFile {
            origin: origin.to_owned(),
            size: state.size,
            root: Base64::encode_string(&state.root),
            checkpoint: state.checkpoint.clone(),
            updated_at: state.updated_at,
            follower_state: follower_state.map(Base64::encode_string),
        };
        let mut bytes = serde_json::to_vec(&file).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(io("cannot write", &path))
    }

    /// Keeps a log-signed checkpoint whose state line does not follow from
    /// the records sent with it (curator misbehaviour), with the size it
    /// was verified from and the digest the witness derived. Returns the
    /// file written. (The records are not kept: the checkpoint's root
    /// commits to them, so anyone holding the log can check again.)
    pub fn save_state_evidence(
        &self,
        origin: &str,
        old_size: u64,
        derived: &Hash,
        note: &str,
    ) -> Result<PathBuf, StoreError> {
        let origin_hash = Sha256::digest(origin.as_bytes());
        let note_hash = Sha256::digest(note.as_bytes());
        let path = self.evidence.join(format!(
            "state-{}-{}.txt",
            hex::encode(&origin_hash[..8]),
            hex::encode(&note_hash[..8])
        ));
        let text = format!(
            "# A checkpoint of {origin} signed by the log whose mazu-state-sha256 line does not\n\
             # follow from the records sent with it (from size {old_size}).\n\
             # The state digest the witness derived: {}\n\
             # The checkpoint:\n{note}",
            Base64::encode_string(derived)
        );
        write_atomic(&path, text.as_bytes()).map_err(io("cannot write", &path))?;
        Ok(path)
    }

    /// Keeps two log-signed checkpoints of one size with different roots
    /// (a fork: proof that the log misbehaved). Returns the file written.
    pub fn save_fork_evidence(
        &self,
        origin: &str,
        stored: &str,
        conflicting: &str,
    ) -> Result<PathBuf, StoreError> {
        let origin_hash = Sha256::digest(origin.as_bytes());
        let note_hash = Sha256::digest(conflicting.as_bytes());
        let path = self.evidence.join(format!(
            "fork-{}-{}.txt",
            hex::encode(&origin_hash[..8]),
            hex::encode(&note_hash[..8])
        ));
        let text = format!(
            "# Two checkpoints of {origin} signed by the log, same size, different root hashes.\n\
             # The one the witness had cosigned:\n{stored}\n# The conflicting one:\n{conflicting}"
        );
        write_atomic(&path, text.as_bytes()).map_err(io("cannot write", &path))?;
        Ok(path)
    }
}
