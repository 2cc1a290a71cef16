//! The state snapshot: a start-up accelerator, never a source of truth.
//!
//! Replaying the log decodes every RBE registration (each point
//! subgroup-checked) and re-runs its pairing check: ~40 ms per entry at
//! capacity 65,536, most of an hour for a full registry. And even checking
//! a snapshot against the whole log prefix it covers made the start-up
//! follow the history. So the curator writes, every `--snapshot-every`
//! entries and on a clean shutdown, everything it holds after a log prefix
//! to `DATA_DIR/state.snapshot`, atomically (temporary file, fsync, rename,
//! fsync of the directory), and starts from it without reading the
//! prefix: [`crate::snapshot_start`] restores from it with the checks that
//! follow the live state, and [`crate::prefix_check`] checks the prefix in
//! the background once the curator serves.
//!
//! # File format (version 3, log format 2)
//!
//! ```text
//! magic      "MZSNAP03" (8 bytes; the final '3' is the format version)
//! crs digest 32 bytes
//! entries    u64 BE: the log prefix the snapshot covers
//! 5 sections, each a u64 BE length and its bytes, in this order:
//!   image    the rbe crate's state image (RBES) after the prefix
//!   follower the follower state after it (MZFS: id lifecycle, Merkle frontier)
//!   identity the curator's maps beside the lifecycle (MZCI, registry::image)
//!   tree     chunk bits u8, u64 count + the roots of the complete chunks
//!            (32 bytes each), u64 count + the leaf hashes after them
//!   frames   prefix byte length u64, u64 count + the offset (u64) of every
//!            16th frame
//! checksum   SHA-256 of every byte above (32 bytes)
//! ```
//!
//! Formats 1 and 2 (`MZSNAP01`, `MZSNAP02`) are refused by name
//! ([`SnapshotLoadError::OldFormat`]): the log is replayed and the next
//! snapshot replaces the file.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mazu_log::merkle::Hash;
use mazu_rbe::{RegistryState, SnapshotError};
use sha2::{Digest, Sha256};

use crate::store::{FrameLayout, StoreError};

/// Name of the snapshot file inside the data directory.
pub const SNAPSHOT_FILE: &str = "state.snapshot";

/// Magic bytes; the last byte is the format version.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"MZSNAP03";

/// The magic of a format the curator no longer reads, without its version.
const MAGIC_PREFIX: &[u8; 7] = b"MZSNAP0";

/// Header: magic, CRS digest, entries.
const HEADER_LEN: usize = 8 + 32 + 8;

/// Why a snapshot was not used (the curator then replays the whole log).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotLoadError {
    /// The file cannot be read.
    #[error("cannot read the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// Shorter than a header and checksum, or its sections do not add up
    /// to the file length (a truncated or extended file).
    #[error("snapshot is truncated or has a wrong length")]
    Length,
    /// The SHA-256 over the file does not match (damaged file).
    #[error("snapshot checksum mismatch (damaged file)")]
    Checksum,
    /// Not a curator snapshot.
    #[error("not a curator snapshot (bad magic)")]
    Magic,
    /// A snapshot of an older format.
    #[error(
        "snapshot format {version} is not readable by this curator (it reads format 3, for log \
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
    /// The RBE image is invalid or does not match the log.
    #[error("snapshot does not match the log: {0}")]
    Restore(#[from] SnapshotError),
    /// Reading the log failed.
    #[error("reading the log prefix: {0}")]
    Store(#[from] StoreError),
    /// A section does not decode, or the sections contradict each other.
    #[error("snapshot is inconsistent: {0}")]
    Parts(String),
    /// A log entry the snapshot points to (a live bind, the last covered
    /// entries) is not what it says.
    #[error("snapshot does not match the log: log entry #{index}: {reason}")]
    Entry {
        /// Its index.
        index: u64,
        /// Why.
        reason: String,
    },
}

/// What a snapshot holds, taken from a running curator at one log size
/// (see [`crate::service`]'s capture) and encoded off the writer.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The log size it reflects.
    pub entries: u64,
    /// The RBE state.
    pub rbe: RegistryState,
    /// The follower state (`LogFollower::encode_state`).
    pub follower: Vec<u8>,
    /// The identity image (`Registry::identity_image`).
    pub identity: Vec<u8>,
    /// The Merkle tree's chunk size (bits).
    pub chunk_bits: u32,
    /// The roots of its complete chunks.
    pub chunk_roots: Vec<Hash>,
    /// The leaf hashes after them.
    pub tail: Vec<Hash>,
    /// Where the log's frames lie (empty for a store without a byte
    /// layout).
    pub layout: FrameLayout,
}

/// A snapshot file whose framing passed, its sections borrowed.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    /// Entries covered.
    pub entries: u64,
    /// The RBE state image.
    pub image: &'a [u8],
    /// The follower state.
    pub follower: &'a [u8],
    /// The identity image.
    pub identity: &'a [u8],
    /// The Merkle tree's chunk size (bits).
    pub chunk_bits: u32,
    /// The roots of its complete chunks.
    pub chunk_roots: Vec<Hash>,
    /// The leaf hashes after them.
    pub tail: Vec<Hash>,
    /// Where the frames of the prefix lie (`entries` 0: not known).
    pub layout: FrameLayout,
}

/// Encodes the snapshot file of `capture`.
pub fn encode(capture: &Capture) -> Vec<u8> {
    let image = capture.rbe.to_snapshot_bytes();
    let mut tree = Vec::with_capacity(17 + 32 * (capture.chunk_roots.len() + capture.tail.len()));
    tree.push(u8::try_from(capture.chunk_bits).unwrap_or(u8::MAX));
    for hashes in [&capture.chunk_roots, &capture.tail] {
        tree.extend_from_slice(&(hashes.len() as u64).to_be_bytes());
        for h in hashes {
            tree.extend_from_slice(h);
        }
    }
    let mut frames = Vec::with_capacity(16 + 8 * capture.layout.marks.len());
    frames.extend_from_slice(&capture.layout.end.to_be_bytes());
    frames.extend_from_slice(&(capture.layout.marks.len() as u64).to_be_bytes());
    for m in &capture.layout.marks {
        frames.extend_from_slice(&m.to_be_bytes());
    }
    let sections: [&[u8]; 5] = [&image, &capture.follower, &capture.identity, &tree, &frames];
    let mut out =
        Vec::with_capacity(HEADER_LEN + 32 + sections.iter().map(|s| 8 + s.len()).sum::<usize>());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&capture.rbe.crs().digest());
    out.extend_from_slice(&capture.entries.to_be_bytes());
    for section in sections {
        out.extend_from_slice(&(section.len() as u64).to_be_bytes());
        out.extend_from_slice(section);
    }
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    out
}

/// Parses a snapshot file: length, checksum, magic (an older format named),
/// CRS, and the sections' framing. The sections' contents are checked by
/// whoever uses them.
pub fn parse<'a>(bytes: &'a [u8], crs_digest: &[u8; 32]) -> Result<Parsed<'a>, SnapshotLoadError> {
    // An older format is named before anything else: its framing differs.
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
    let (header, mut rest) = body.split_at(HEADER_LEN);
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotLoadError::Magic);
    }
    if &header[8..40] != crs_digest {
        return Err(SnapshotLoadError::CrsMismatch);
    }
    let entries = be_u64(&header[40..48]);
    let mut sections = [&[][..]; 5];
    for section in &mut sections {
        let (len, after) = rest
            .split_first_chunk::<8>()
            .ok_or(SnapshotLoadError::Length)?;
        let len =
            usize::try_from(u64::from_be_bytes(*len)).map_err(|_| SnapshotLoadError::Length)?;
        let (bytes, after) = after
            .split_at_checked(len)
            .ok_or(SnapshotLoadError::Length)?;
        *section = bytes;
        rest = after;
    }
    if !rest.is_empty() {
        return Err(SnapshotLoadError::Length);
    }
    let [image, follower, identity, tree, frames] = sections;
    let parts = |what: &str| SnapshotLoadError::Parts(format!("the {what} section is malformed"));
    let (&chunk_bits, tree) = tree.split_first().ok_or_else(|| parts("tree"))?;
    let (chunk_roots, tree) = hashes(tree).ok_or_else(|| parts("tree"))?;
    let (tail, tree) = hashes(tree).ok_or_else(|| parts("tree"))?;
    if !tree.is_empty() {
        return Err(parts("tree"));
    }
    let (end, frames) = frames
        .split_first_chunk::<8>()
        .ok_or_else(|| parts("frames"))?;
    let (count, frames) = frames
        .split_first_chunk::<8>()
        .ok_or_else(|| parts("frames"))?;
    let (marks, trailing) = frames.as_chunks::<8>();
    if !trailing.is_empty() || marks.len() as u64 != u64::from_be_bytes(*count) {
        return Err(parts("frames"));
    }
    let marks: Vec<u64> = marks.iter().map(|m| u64::from_be_bytes(*m)).collect();
    let layout = FrameLayout {
        // A store without a byte layout records none.
        entries: if marks.is_empty() { 0 } else { entries },
        end: u64::from_be_bytes(*end),
        marks,
    };
    Ok(Parsed {
        entries,
        image,
        follower,
        identity,
        chunk_bits: u32::from(chunk_bits),
        chunk_roots,
        tail,
        layout,
    })
}

/// A u64 count and that many 32-byte hashes, and what follows.
fn hashes(bytes: &[u8]) -> Option<(Vec<Hash>, &[u8])> {
    let (count, rest) = bytes.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_be_bytes(*count))
        .ok()?
        .checked_mul(32)?;
    let (hashes, rest) = rest.split_at_checked(len)?;
    Some((hashes.as_chunks::<32>().0.to_vec(), rest))
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_be_bytes(b)
}

/// How many log entries the snapshot at `path` covers, if it is an intact
/// snapshot (length, checksum, magic) made under the CRS `crs_digest`:
/// `Ok(None)` if there is none or it is not usable evidence (damaged,
/// another format or CRS). Such a snapshot was written from a state that
/// held that many durable entries, so the log must still hold them.
pub fn covered_entries(path: &Path, crs_digest: &[u8; 32]) -> std::io::Result<Option<u64>> {
    Ok(covered_prefix(path, crs_digest)?.map(|(entries, _)| entries))
}

/// [`covered_entries`], with where the snapshot says the frames of that
/// prefix lie (`None` if it does not say).
pub fn covered_prefix(
    path: &Path,
    crs_digest: &[u8; 32],
) -> std::io::Result<Option<(u64, Option<FrameLayout>)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(parse(&bytes, crs_digest).ok().map(|p| {
        let layout = (p.layout.entries > 0).then_some(p.layout);
        (p.entries, layout)
    }))
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
    Ok(Some(be_u64(&header[40..48])))
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
    /// The snapshot was refuted: none is written any more.
    retired: AtomicBool,
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
            retired: AtomicBool::new(false),
        }
    }

    /// Whether a periodic snapshot is due at log size `version`.
    pub(crate) fn due(&self, version: u64) -> bool {
        self.every > 0
            && version >= self.last.load(Ordering::SeqCst).saturating_add(self.every)
            && !self.busy.load(Ordering::SeqCst)
    }

    /// Moves the snapshot aside to `NAME.refuted-<stamp>` (kept as
    /// evidence) and writes none any more: the background check refuted
    /// it. Returns where it went (`None`: there was no file).
    pub(crate) fn retire(&self, stamp: u64) -> std::io::Result<Option<PathBuf>> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.retired.store(true, Ordering::SeqCst);
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(format!(".refuted-{stamp}"));
        let aside = PathBuf::from(aside);
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        if let Some(dir) = self.path.parent() {
            mazu_service::files::sync_dir(dir)?;
        }
        Ok(Some(aside))
    }

    /// Writes the snapshot of `capture` now (blocking) unless one at least
    /// as new exists. Returns the bytes written (0 if skipped).
    pub(crate) fn write_now(&self, capture: &Capture) -> std::io::Result<usize> {
        let version = capture.entries;
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.retired.load(Ordering::SeqCst) {
            return Ok(0);
        }
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
            covered_entries(&self.path, &capture.rbe.crs().digest())?
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
        let bytes = encode(capture);
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

    /// Writes the snapshot of `capture` on a background thread, unless one
    /// is already being written.
    pub(crate) fn write_in_background(self: &Arc<Self>, capture: Capture) {
        if self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("state-snapshot".into())
            .spawn(move || {
                if let Err(e) = this.write_now(&capture) {
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
