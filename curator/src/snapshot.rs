//! The state snapshot: a start-up accelerator, never a source of truth.
//!
//! Replaying the log decodes every RBE registration (each point
//! subgroup-checked) and re-runs its pairing check: ~40 ms per entry at
//! capacity 65,536, most of an hour for a full registry. The curator therefore
//! writes, every `--snapshot-every` entries and on a clean shutdown, an image
//! of its RBE state ([`mazu_rbe::RegistryState::to_snapshot_bytes`]) to
//! `DATA_DIR/state.snapshot`, atomically (temporary file, fsync, rename, fsync
//! of the directory).
//!
//! # File format (version 2, log format 2)
//!
//! ```text
//! magic      "MZSNAP02" (8 bytes; the final '2' is the format version)
//! crs digest 32 bytes
//! entries    u64 BE: the log prefix the snapshot covers (binds and reveals)
//! image len  u64 BE
//! image      the rbe crate's state image (RBES) after the prefix's binds
//! checksum   SHA-256 of every byte above (32 bytes)
//! ```
//!
//! A format 1 snapshot (`MZSNAP01`, written for log format 1 where every
//! entry was a registration) is refused with [`SnapshotLoadError::OldFormat`]
//! and replaced by the next snapshot written.
//!
//! # Loading
//!
//! The log stays authoritative: it is scanned as always, and the snapshot is
//! used only if it is intact (length, checksum, magic), made under the
//! configured CRS, covers no more entries than the log holds, and matches the
//! log prefix it claims to cover: every covered entry is decoded and its
//! record derived (hashing only, no curve arithmetic) and applied to the id
//! lifecycle with the same rules as a replay (a void entry is refused);
//! [`mazu_rbe::SnapshotRestore`] checks every covered bind's slot, id and
//! public key against the image, recomputes the RBE log digest from the
//! log's own registration bytes, and recomputes the block commitments from
//! the keys. The identity state (lifecycle, bind and reveal indexes, claims
//! digests) is not in the snapshot at all: it is re-derived from the covered
//! entries. Then only the entries after the prefix are replayed with every
//! check. Anything else (missing, damaged, stale, another CRS, another log,
//! an older format) logs a warning and falls back to the full replay, so a
//! bad snapshot can cost time but never change the state the public
//! parameters are computed from.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mazu_log::LeafRecord;
use mazu_rbe::{Crs, RegistryState, SnapshotError, SnapshotRestore};
use sha2::{Digest, Sha256};

use crate::entry::{EntryBody, LogEntry};
use crate::registry::Registry;
use crate::store::{LogStore, StoreError};

/// Name of the snapshot file inside the data directory.
pub const SNAPSHOT_FILE: &str = "state.snapshot";

/// Magic bytes; the last byte is the format version.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"MZSNAP02";

/// The magic of a format the curator no longer reads, without its version.
const MAGIC_PREFIX: &[u8; 7] = b"MZSNAP0";

/// Header: magic, CRS digest, entries, image length.
const HEADER_LEN: usize = 8 + 32 + 8 + 8;

/// Entries read from the log per batch while checking the prefix.
const READ_BATCH: usize = 256;

/// Why a snapshot was not used (the curator then replays the whole log).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotLoadError {
    /// The file cannot be read.
    #[error("cannot read the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// Shorter than a header and checksum, or the image length disagrees
    /// with the file length (a truncated or extended file).
    #[error("snapshot is truncated or has a wrong length")]
    Length,
    /// The SHA-256 over the file does not match (damaged file).
    #[error("snapshot checksum mismatch (damaged file)")]
    Checksum,
    /// Not a curator snapshot.
    #[error("not a curator snapshot (bad magic)")]
    Magic,
    /// A snapshot of an older format (written for another log format).
    #[error(
        "snapshot format {version} is not readable by this curator (it reads format 2, for log \
         format 2); the log is replayed instead and the next snapshot replaces this file"
    )]
    OldFormat {
        /// The file's format version.
        version: u8,
    },
    /// Made under another CRS.
    #[error("snapshot was made under another CRS")]
    CrsMismatch,
    /// Covers more entries than the log holds (the log was replaced or
    /// truncated after the snapshot was written).
    #[error("snapshot covers {covers} entries but the log holds only {log_len}")]
    AheadOfLog {
        /// Entries the snapshot covers.
        covers: u64,
        /// Entries in the log.
        log_len: u64,
    },
    /// The image is invalid or does not match the log prefix.
    #[error("snapshot does not match the log: {0}")]
    Restore(#[from] SnapshotError),
    /// Reading the log prefix failed.
    #[error("reading the log prefix: {0}")]
    Store(#[from] StoreError),
    /// A covered log entry is malformed or conflicts with an earlier one.
    #[error("log entry #{index} of the covered prefix: {reason}")]
    Entry {
        /// Its index.
        index: u64,
        /// Why.
        reason: String,
    },
}

/// Encodes the snapshot file for `state`, the RBE state after the first
/// `entries` log entries.
pub fn encode(state: &RegistryState, entries: u64) -> Vec<u8> {
    let image = state.to_snapshot_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + image.len() + 32);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&state.crs().digest());
    out.extend_from_slice(&entries.to_be_bytes());
    out.extend_from_slice(&(image.len() as u64).to_be_bytes());
    out.extend_from_slice(&image);
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    out
}

/// A snapshot file whose framing passed: (entries covered, image bytes).
fn parse<'a>(bytes: &'a [u8], crs_digest: &[u8; 32]) -> Result<(u64, &'a [u8]), SnapshotLoadError> {
    // An older format is named before anything else: its framing may differ.
    if bytes.len() >= 8 && bytes[..7] == MAGIC_PREFIX[..] && bytes[7] != SNAPSHOT_MAGIC[7] {
        let version = bytes[7].wrapping_sub(b'0');
        return Err(SnapshotLoadError::OldFormat { version });
    }
    let body_len = bytes
        .len()
        .checked_sub(32)
        .filter(|l| *l >= HEADER_LEN)
        .ok_or(SnapshotLoadError::Length)?;
    let (body, checksum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != checksum {
        return Err(SnapshotLoadError::Checksum);
    }
    let (header, image) = body.split_at(HEADER_LEN);
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotLoadError::Magic);
    }
    if &header[8..40] != crs_digest {
        return Err(SnapshotLoadError::CrsMismatch);
    }
    let mut entries = [0u8; 8];
    entries.copy_from_slice(&header[40..48]);
    let mut image_len = [0u8; 8];
    image_len.copy_from_slice(&header[48..56]);
    if u64::from_be_bytes(image_len) != image.len() as u64 {
        return Err(SnapshotLoadError::Length);
    }
    Ok((u64::from_be_bytes(entries), image))
}

/// Loads the snapshot at `path` (`Ok(None)` if there is none) and checks it
/// against the first entries of `store` (see the module docs). Returns the
/// state after the covered entries.
///
/// `records` is called with the leaf record of every covered entry, in log
/// order, as the prefix is checked (the Merkle tree is built from them
/// without another pass over the log); if the snapshot is refused, what it
/// was given is to be discarded.
pub fn load(
    path: &Path,
    crs: &Crs,
    store: &dyn LogStore,
    records: &mut dyn FnMut(&LeafRecord),
) -> Result<Option<Registry>, SnapshotLoadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    restore(&bytes, crs, store, records).map(Some)
}

/// How many log entries the snapshot at `path` covers, if it is an intact
/// snapshot (length, checksum, magic) made under the CRS `crs_digest`:
/// `Ok(None)` if there is none or it is not usable evidence (damaged,
/// another format or CRS). Such a snapshot was written from a state that
/// held that many durable entries, so the log must still hold them.
pub fn covered_entries(path: &Path, crs_digest: &[u8; 32]) -> std::io::Result<Option<u64>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(parse(&bytes, crs_digest).ok().map(|(covers, _)| covers))
}

/// The entry count in the header of the snapshot at `path`, unchecked
/// (`None`: no file, or not this format).
fn claimed_entries(path: &Path) -> std::io::Result<Option<u64>> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut header = [0u8; HEADER_LEN];
    if file.read_exact(&mut header).is_err() || header[..8] != SNAPSHOT_MAGIC {
        return Ok(None);
    }
    let mut entries = [0u8; 8];
    entries.copy_from_slice(&header[40..48]);
    Ok(Some(u64::from_be_bytes(entries)))
}

/// [`load`] on bytes already read.
pub fn restore(
    bytes: &[u8],
    crs: &Crs,
    store: &dyn LogStore,
    records: &mut dyn FnMut(&LeafRecord),
) -> Result<Registry, SnapshotLoadError> {
    let (covers, image) = parse(bytes, &crs.digest())?;
    let log_len = store.len();
    if covers > log_len {
        return Err(SnapshotLoadError::AheadOfLog { covers, log_len });
    }
    let mut restore = SnapshotRestore::from_bytes_unchecked(crs.clone(), image)?;
    // The identity side is re-derived from the covered entries on an empty
    // RBE state (whose slots are all free, so only the lifecycle rules
    // decide); the checked image replaces it at the end.
    let mut registry = Registry::new(crs.clone());
    let mut index = 0u64;
    while index < covers {
        let want = usize::try_from(covers - index).map_or(READ_BATCH, |r| r.min(READ_BATCH));
        let chunk = store.read_range(index, want)?;
        if chunk.is_empty() {
            return Err(SnapshotLoadError::AheadOfLog {
                covers,
                log_len: index,
            });
        }
        for bytes in chunk {
            let entry_error = |reason: String| SnapshotLoadError::Entry { index, reason };
            let entry = LogEntry::from_bytes(&bytes).map_err(|e| entry_error(e.to_string()))?;
            let record = entry
                .record(&bytes)
                .map_err(|e| entry_error(e.to_string()))?;
            match &entry.body {
                EntryBody::Bind {
                    slot, registration, ..
                } => {
                    let (image_slot, image_id) = restore.push_registration(registration)?;
                    if image_slot != *slot || image_id != entry.id {
                        return Err(entry_error(
                            "the registration's slot or id is not the entry's".into(),
                        ));
                    }
                }
                EntryBody::Release { .. } | EntryBody::Revoke { .. } => {
                    // The RBE side takes out exactly the registration of the
                    // id's bind entry.
                    let bind_index =
                        registry
                            .bind_of(&entry.id)
                            .map(|b| b.index)
                            .ok_or_else(|| {
                                entry_error("ends a binding the log does not hold".into())
                            })?;
                    let bind_bytes = crate::service::read_entry(store, bind_index)
                        .map_err(|e| entry_error(e.to_string()))?;
                    let Ok(LogEntry {
                        body: EntryBody::Bind { registration, .. },
                        ..
                    }) = LogEntry::from_bytes(&bind_bytes)
                    else {
                        return Err(entry_error(format!(
                            "entry {bind_index}, the binding it ends, is not a bind"
                        )));
                    };
                    let (_, image_id) = restore.push_release(&registration)?;
                    if image_id != entry.id {
                        return Err(entry_error(
                            "the released registration's id is not the entry's".into(),
                        ));
                    }
                }
                EntryBody::Reveal { .. } => {}
            }
            registry
                .apply_identity(&entry, &record)
                .map_err(|e| entry_error(e.to_string()))?;
            records(&record);
            index += 1;
        }
    }
    let rbe = restore.finish()?;
    registry.replace_rbe(rbe);
    Ok(registry)
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync
/// of the directory. A crash leaves the old snapshot or the new one, and a
/// half-written temporary file that the next write replaces.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::bootstrap::write_atomic(path, bytes)
}

/// Writes snapshots: every `every` entries (in the background, off the
/// writer thread) and on demand (shutdown).
#[derive(Debug)]
pub(crate) struct Snapshots {
    path: PathBuf,
    every: u64,
    /// Version of the newest snapshot written (or being written).
    last: AtomicU64,
    /// A background write is running.
    busy: Arc<AtomicBool>,
    /// Serializes writes of the same file.
    lock: Mutex<()>,
}

impl Snapshots {
    /// `every` = 0 disables the periodic snapshots (on-demand ones still work).
    pub(crate) fn new(path: PathBuf, every: u64, last: u64) -> Self {
        Self {
            path,
            every,
            last: AtomicU64::new(last),
            busy: Arc::new(AtomicBool::new(false)),
            lock: Mutex::new(()),
        }
    }

    /// Whether a periodic snapshot is due at log size `version`.
    pub(crate) fn due(&self, version: u64) -> bool {
        self.every > 0
            && version >= self.last.load(Ordering::SeqCst).saturating_add(self.every)
            && !self.busy.load(Ordering::SeqCst)
    }

    /// Writes a snapshot of `state`, the RBE state after the first `version`
    /// log entries, now (blocking) unless one at least as new exists.
    /// Returns the bytes written (0 if skipped).
    pub(crate) fn write_now(&self, state: &RegistryState, version: u64) -> std::io::Result<usize> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A snapshot of version 0 would only slow the next start down.
        if version == 0 || version <= self.last.load(Ordering::SeqCst) && self.path.exists() {
            return Ok(0);
        }
        // Evidence is never overwritten with less than it proves: an intact
        // snapshot covering more entries than this state is kept (it shows
        // entries this state lacks; see docs/curator.md, "Operations").
        // The header is read first: the whole file is read and checked only
        // when it claims more (a damaged header proves nothing).
        let claims_more = claimed_entries(&self.path)?.is_some_and(|c| c > version);
        let existing = if claims_more {
            covered_entries(&self.path, &state.crs().digest())?
        } else {
            None
        };
        if let Some(covers) = existing
            && covers > version
        {
            tracing::warn!(
                path = %self.path.display(),
                snapshot_entries = covers,
                state_entries = version,
                "not replacing the state snapshot: it covers more log entries than the current \
                 state (kept as evidence)"
            );
            return Ok(0);
        }
        let started = Instant::now();
        let bytes = encode(state, version);
        write(&self.path, &bytes)?;
        self.last.fetch_max(version, Ordering::SeqCst);
        tracing::info!(
            entries = version,
            bytes = bytes.len(),
            write_ms = started.elapsed().as_millis() as u64,
            path = %self.path.display(),
            "state snapshot written"
        );
        Ok(bytes.len())
    }

    /// Writes a snapshot of `state` on a background thread, unless one is
    /// already being written.
    pub(crate) fn write_in_background(self: &Arc<Self>, state: RegistryState, version: u64) {
        if self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("state-snapshot".into())
            .spawn(move || {
                if let Err(e) = this.write_now(&state, version) {
                    tracing::warn!(error = %e, "writing the state snapshot failed (the log is unaffected)");
                }
                this.busy.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.busy.store(false, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start the snapshot thread");
        }
    }

    /// Whether a background write is running (tests wait for it).
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }
}
