//! The embedded log: one append-only file of checksummed frames.
//!
//! # File format
//!
//! ```text
//! header  = "MAZULOG1" (8 bytes: magic, the final '1' is the file format version)
//!           context  (32 bytes: the SHA-256 digest of the CRS the log was written under)
//! frame*  = length   (u32 big-endian, 1 ..= MAX_ENTRY_LEN: payload length)
//!           crc      (u32 big-endian: CRC-32C (Castagnoli) of the payload)
//!           payload  (length bytes: one log entry, see crate::entry)
//! ```
//!
//! An append writes one frame at the end of the file and calls `fdatasync`
//! before it returns; the curator acknowledges a registration only after that.
//!
//! # Recovery
//!
//! [`FileLogStore::open_with`] scans every frame, read-only, against what
//! the caller knows about the log *independently of the frames*
//! ([`Known`]: the number of entries already acknowledged, from the
//! durably recorded checkpoint and the state snapshot, and the Merkle root
//! of the acknowledged prefix). Because appends are serialized and each one
//! is synced before the next starts, a crash can only damage the *last*
//! frame, and only one that was never acknowledged. So:
//!
//! - every frame of the acknowledged prefix must parse, and (when a root is
//!   known) the records of that prefix must hash to that root; otherwise
//!   opening fails with [`StoreError::AcknowledgedLost`] or
//!   [`StoreError::RootMismatch`], which name the offset, the entry index and
//!   how many acknowledged entries would be lost;
//! - after the acknowledged prefix, only a *genuinely incomplete* last frame
//!   is a torn tail: an incomplete header, a payload that runs past the end
//!   of the file, a complete last frame whose checksum fails (a torn write),
//!   or zeros to the end of the file (a size update that beat the data to
//!   disk). It is truncated and reported. Anything else (a length out of
//!   range followed by non-zero bytes, a bad frame with data after it) is
//!   corruption: [`StoreError::Corrupt`].
//!
//! Nothing is written before every check passed: a refused open leaves the
//! file exactly as it was.

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use mazu_log::Frontier;
use mazu_log::merkle::Hash;

use super::frame_index::{FrameIndex, FrameLayout};
use super::{LogStore, StoreError};

/// Magic bytes at the start of the file; the last byte is the format version.
pub const FILE_MAGIC: [u8; 8] = *b"MAZULOG1";

/// Header length: magic + 32-byte context.
const HEADER_LEN: u64 = 8 + 32;

/// Frame header length: u32 length + u32 CRC-32C.
const FRAME_HEADER_LEN: u64 = 8;

/// Largest entry a frame may carry (8 MiB). A registration at the largest RBE
/// capacity (block size 32,768) is about 1.6 MB; anything larger is damage.
pub const MAX_ENTRY_LEN: usize = 8 << 20;

/// What [`FileLogStore::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// Valid entries in the log.
    pub entries: u64,
    /// Bytes of a torn or damaged tail that were truncated away (0 normally).
    pub discarded_bytes: u64,
    /// Why the tail was discarded, if it was.
    pub discarded_reason: Option<&'static str>,
    /// Whether the file was created (or its header rewritten) by this open.
    pub created: bool,
    /// How long the scan took.
    pub scan_time: Duration,
    /// Entries at the start of the log whose frames were not read: their
    /// layout was taken from [`Known::layout`] (0: every frame was
    /// scanned). Their frames are checked later by
    /// [`LogStore::verify_prefix`](super::LogStore::verify_prefix), and the
    /// known root ([`Known::root`]) was **not** checked: the caller checks
    /// it against the tree it restored.
    pub unverified_prefix: u64,
    /// Why a [`Known::layout`] was not used (every frame was then scanned).
    pub layout_refused: Option<String>,
}

/// Computes the Merkle leaf hash of a log entry's payload (its record's
/// hash), for checking the acknowledged prefix against a known root.
pub type LeafFn<'a> = &'a dyn Fn(&[u8]) -> Result<Hash, String>;

/// What the caller knows about the log independently of its frames: the
/// acknowledged prefix that must survive intact.
#[derive(Clone, Copy, Default)]
pub struct Known<'a> {
    /// Entries that were acknowledged (or otherwise proven durable, e.g. by
    /// the state snapshot): every one of them must be in the file.
    pub entries: u64,
    /// Where `entries` comes from, for error messages (e.g. "the
    /// acknowledged checkpoint data/acknowledged.checkpoint").
    pub source: &'a str,
    /// A Merkle root of the first `.0` entries, with the function that
    /// hashes one entry into its leaf (`.2`).
    pub root: Option<(u64, Hash, LeafFn<'a>)>,
    /// Where the frames of a prefix lie, from the state snapshot: if it
    /// passes the spot checks (well formed, inside the file, the frames at
    /// its first and last marks parse and end exactly at its end), those
    /// frames are not scanned now (see [`OpenReport::unverified_prefix`]).
    pub layout: Option<&'a FrameLayout>,
}

impl core::fmt::Debug for Known<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Known")
            .field("entries", &self.entries)
            .field("source", &self.source)
            .field(
                "root",
                &self.root.as_ref().map(|(n, r, _)| (*n, hex::encode(r))),
            )
            .field("layout", &self.layout.map(|l| (l.entries, l.end)))
            .finish()
    }
}

/// The append-only file store. See the [`crate::store`] module docs and
/// `docs/curator.md` for the file format and recovery rules.
#[derive(Debug)]
pub struct FileLogStore {
    path: PathBuf,
    /// Serializes appends; holds the write handle and the end offset.
    writer: Mutex<Writer>,
    /// Start offset of every committed frame, readable while an append syncs.
    frames: RwLock<FrameIndex>,
    /// Read handle for positional reads (`pread` needs no lock).
    reader: File,
    /// Mirror of `Writer::poisoned`, readable without waiting for an fsync.
    poisoned: AtomicBool,
    /// The layout of a prefix taken from the snapshot, until its frames
    /// are checked ([`LogStore::verify_prefix`]).
    unverified: Mutex<Option<FrameLayout>>,
}

#[derive(Debug)]
struct Writer {
    file: File,
    end: u64,
    poisoned: bool,
}

impl FileLogStore {
    /// Opens (or creates) the log at `path`, bound to `context` (the CRS
    /// digest), knowing nothing about it beyond its own frames: no entry is
    /// known to be acknowledged, so only a genuinely incomplete tail is
    /// truncated. The curator uses [`FileLogStore::open_with`].
    pub fn open(path: &Path, context: [u8; 32]) -> Result<(Self, OpenReport), StoreError> {
        Self::open_with(path, context, &Known::default())
    }

    /// Opens (or creates) the log at `path`, bound to `context` (the CRS
    /// digest): a log written under another context is refused. Scans and
    /// verifies every frame against `known` and truncates a torn tail past
    /// the acknowledged prefix (see the module docs); on any refusal the
    /// file is left untouched.
    pub fn open_with(
        path: &Path,
        context: [u8; 32],
        known: &Known<'_>,
    ) -> Result<(Self, OpenReport), StoreError> {
        let started = Instant::now();
        let display = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(known.entries == 0)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StoreError::Missing {
                        path: display.clone(),
                        acknowledged: known.entries,
                        source_desc: known.source.to_string(),
                    }
                } else {
                    StoreError::Io(e)
                }
            })?;
        let len = file.metadata()?.len();

        let mut expected_header = Vec::with_capacity(HEADER_LEN as usize);
        expected_header.extend_from_slice(&FILE_MAGIC);
        expected_header.extend_from_slice(&context);

        let mut created = false;
        if len < HEADER_LEN {
            if known.entries > 0 {
                return Err(StoreError::AcknowledgedLost {
                    path: display,
                    offset: 0,
                    index: 0,
                    reason: "the file is shorter than its header".into(),
                    acknowledged: known.entries,
                    source_desc: known.source.to_string(),
                });
            }
            // A crash while the header was being written leaves a prefix of it
            // (or nothing). Anything else is not ours.
            let mut head = vec![0u8; len as usize];
            file.read_exact_at(&mut head, 0)?;
            let prefix_ok = head.iter().zip(&expected_header).all(|(a, b)| a == b)
                || head.iter().all(|b| *b == 0);
            if !prefix_ok {
                return Err(StoreError::NotALog { path: display });
            }
            file.set_len(0)?;
            file.write_all_at(&expected_header, 0)?;
            file.sync_all()?;
            sync_parent_dir(path)?;
            created = true;
        } else {
            let mut head = [0u8; HEADER_LEN as usize];
            file.read_exact_at(&mut head, 0)?;
            if head[..8] != FILE_MAGIC {
                return Err(StoreError::NotALog { path: display });
            }
            if head[8..] != context {
                return Err(StoreError::ContextMismatch {
                    path: display,
                    expected: hex::encode(context),
                    found: hex::encode(&head[8..]),
                });
            }
        }

        let len = file.metadata()?.len();
        // A prefix whose layout the snapshot gives (and that passes the spot
        // checks) is not scanned: start-up follows the entries after it.
        let mut layout_refused = None;
        let trusted = known.layout.and_then(|layout| {
            check_layout(&file, len, layout)
                .map_err(|reason| layout_refused = Some(reason))
                .ok()
                .map(|index| (layout.clone(), index))
        });
        let (start, frames, leaves_wanted, leaf) = match &trusted {
            Some((layout, index)) => (layout.end, index.clone(), 0, None),
            None => (
                HEADER_LEN,
                FrameIndex::default(),
                known.root.as_ref().map_or(0, |(n, _, _)| *n),
                known.root.as_ref().map(|(_, _, f)| *f),
            ),
        };
        let scan = scan_frames(&file, len, start, frames, leaves_wanted, leaf)?;
        let valid = scan.frames.len();
        // 1. The acknowledged prefix is all there.
        if valid < known.entries {
            let (offset, reason) = match &scan.damage {
                Some(d) => (d.offset, d.reason.to_string()),
                None => (scan.end, "the file ends here".to_string()),
            };
            return Err(StoreError::AcknowledgedLost {
                path: display,
                offset,
                index: valid,
                reason,
                acknowledged: known.entries,
                source_desc: known.source.to_string(),
            });
        }
        if let Some(e) = scan.leaf_error {
            return Err(StoreError::AcknowledgedLost {
                path: display,
                offset: e.0,
                index: e.1,
                reason: format!("the entry does not decode: {}", e.2),
                acknowledged: known.entries,
                source_desc: known.source.to_string(),
            });
        }
        // 2. It is the log the known root commits to (with a trusted
        // prefix, the caller checks it against the tree it restores).
        if let Some((size, root, _)) = known.root.as_ref().filter(|_| trusted.is_none()) {
            if scan.leaves.size() != *size {
                return Err(StoreError::RootMismatch {
                    path: display,
                    size: *size,
                    detail: format!("the log has {} entries", scan.leaves.size()),
                    source_desc: known.source.to_string(),
                });
            }
            let found = scan.leaves.root();
            if found != *root {
                return Err(StoreError::RootMismatch {
                    path: display,
                    size: *size,
                    detail: format!(
                        "the first {size} entries hash to {}, the checkpoint says {}",
                        hex::encode(found),
                        hex::encode(root)
                    ),
                    source_desc: known.source.to_string(),
                });
            }
        }
        // 3. Past it, only a genuinely incomplete last frame is a torn tail.
        let mut discarded_bytes = 0;
        let mut discarded_reason = None;
        if let Some(damage) = scan.damage {
            let trailing = len - damage.offset;
            if !damage.torn {
                return Err(StoreError::Corrupt {
                    path: display,
                    offset: damage.offset,
                    index: valid,
                    reason: damage.reason,
                    trailing,
                });
            }
            // Every check passed: only now is the file changed.
            file.set_len(damage.offset)?;
            file.sync_all()?;
            discarded_bytes = trailing;
            discarded_reason = Some(damage.reason);
        }
        let end = scan.end;
        let entries = valid;
        let reader = OpenOptions::new().read(true).open(path)?;
        let store = Self {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer {
                file,
                end,
                poisoned: false,
            }),
            frames: RwLock::new(scan.frames),
            reader,
            poisoned: AtomicBool::new(false),
            unverified: Mutex::new(trusted.as_ref().map(|(layout, _)| layout.clone())),
        };
        let report = OpenReport {
            entries,
            discarded_bytes,
            discarded_reason,
            created,
            scan_time: started.elapsed(),
            unverified_prefix: trusted.map_or(0, |(layout, _)| layout.entries),
            layout_refused,
        };
        Ok((store, report))
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn frames(&self) -> std::sync::RwLockReadGuard<'_, FrameIndex> {
        // A panic while holding the lock cannot leave the index inconsistent
        // (pushes are atomic from a reader's view), so ignore poisoning.
        self.frames
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A frame the scan or an append verified and that no longer reads
    /// back: the file changed under us.
    fn changed(&self, offset: u64, index: u64, reason: &'static str) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            offset,
            index,
            reason,
            trailing: 0,
        }
    }
}

/// A frame encoding of `entry`: length, CRC-32C, payload.
pub(crate) fn encode_frame(entry: &[u8]) -> Result<Vec<u8>, StoreError> {
    if entry.is_empty() || entry.len() > MAX_ENTRY_LEN {
        return Err(StoreError::EntryLength(entry.len()));
    }
    let len = u32::try_from(entry.len()).map_err(|_| StoreError::EntryLength(entry.len()))?;
    let mut frame = Vec::with_capacity(entry.len() + FRAME_HEADER_LEN as usize);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(entry).to_be_bytes());
    frame.extend_from_slice(entry);
    Ok(frame)
}

impl LogStore for FileLogStore {
    fn append(&self, entry: &[u8]) -> Result<u64, StoreError> {
        let frame = encode_frame(entry)?;
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.poisoned {
            return Err(StoreError::Poisoned);
        }
        let at = w.end;
        let written = w
            .file
            .write_all_at(&frame, at)
            .and_then(|()| w.file.sync_data());
        if let Err(err) = written {
            // After a failed write or fsync the page cache may hold bytes that
            // never reach the disk (or will later). Cut the file back to the
            // last acknowledged frame; if even that fails, stop accepting.
            let rolled_back = w.file.set_len(at).and_then(|()| w.file.sync_all());
            if rolled_back.is_err() {
                w.poisoned = true;
                self.poisoned.store(true, Ordering::SeqCst);
            }
            tracing::error!(error = %err, rolled_back = rolled_back.is_ok(), "log append failed");
            return Err(StoreError::Io(err));
        }
        w.end = at + frame.len() as u64;
        let mut frames = self
            .frames
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        frames.push(at, w.end);
        Ok(frames.len() - 1)
    }

    fn read_range(&self, start: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        // Find the nearest remembered frame, then read without the lock:
        // frames below the length are complete on disk.
        let (mark, mut at, stop) = {
            let frames = self.frames();
            let Some((mark, at)) = frames.mark_before(start) else {
                return Ok(Vec::new());
            };
            let limit = u64::try_from(limit).unwrap_or(u64::MAX);
            (mark, at, start.saturating_add(limit).min(frames.len()))
        };
        let mut out = Vec::with_capacity(usize::try_from(stop - start).unwrap_or(0));
        for index in mark..stop {
            let mut head = [0u8; FRAME_HEADER_LEN as usize];
            self.reader.read_exact_at(&mut head, at)?;
            let (len, crc) = split_frame_header(&head);
            if len == 0 || len as usize > MAX_ENTRY_LEN {
                return Err(self.changed(at, index, "frame length out of range on read"));
            }
            if index >= start {
                let mut payload = vec![0u8; len as usize];
                self.reader
                    .read_exact_at(&mut payload, at + FRAME_HEADER_LEN)?;
                if crc32c::crc32c(&payload) != crc {
                    return Err(self.changed(at, index, "checksum mismatch on read"));
                }
                out.push(payload);
            }
            at += FRAME_HEADER_LEN + u64::from(len);
        }
        Ok(out)
    }

    fn len(&self) -> u64 {
        self.frames().len()
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    fn frame_layout(&self, entries: u64) -> Option<FrameLayout> {
        let frames = self.frames();
        (frames.len() == entries).then(|| frames.layout())
    }

    fn unverified_prefix(&self) -> u64 {
        self.unverified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or(0, |l| l.entries)
    }

    fn verify_prefix(&self) -> Result<(), StoreError> {
        let Some(layout) = self
            .unverified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return Ok(());
        };
        let mismatch = |detail: String| StoreError::PrefixMismatch {
            path: self.path.display().to_string(),
            entries: layout.entries,
            detail,
        };
        // A handle of its own: the scan moves the file position.
        let file = File::open(&self.path)?;
        let scan = scan_frames(
            &file,
            layout.end,
            HEADER_LEN,
            FrameIndex::default(),
            0,
            None,
        )?;
        if let Some(damage) = scan.damage {
            return Err(mismatch(format!(
                "entry #{} at byte offset {}: {}",
                scan.frames.len(),
                damage.offset,
                damage.reason
            )));
        }
        let found = scan.frames.layout();
        if found != layout {
            let mark = found
                .marks
                .iter()
                .zip(&layout.marks)
                .position(|(a, b)| a != b);
            return Err(mismatch(format!(
                "the frames found are {} ending at byte {}, the snapshot's frame index says {}                  ending at byte {}{}",
                found.entries,
                found.end,
                layout.entries,
                layout.end,
                mark.map(|k| format!(
                    "; frame #{} starts at byte {}, not {}",
                    k as u64 * super::frame_index::MARK_EVERY,
                    found.marks[k],
                    layout.marks[k]
                ))
                .unwrap_or_default()
            )));
        }
        *self
            .unverified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        Ok(())
    }
}

/// The spot checks of a prefix layout taken from the snapshot: well formed
/// for this file (inside it, marks increasing from the first frame), the
/// first frame and every frame from the last mark parse and check, and
/// the latter end exactly at the layout's end. Returns its index, or why
/// it is not used.
fn check_layout(file: &File, len: u64, layout: &FrameLayout) -> Result<FrameIndex, String> {
    if layout.end > len {
        return Err(format!(
            "the log has {len} bytes, the snapshot's prefix ends at byte {}",
            layout.end
        ));
    }
    let index = FrameIndex::from_layout(layout, HEADER_LEN)
        .ok_or_else(|| "the snapshot's frame index is malformed".to_string())?;
    let Some((mark, mut at)) = layout
        .entries
        .checked_sub(1)
        .and_then(|last| index.mark_before(last))
    else {
        return Ok(index);
    };
    let frame_at = |at: u64| -> Result<u64, String> {
        let bad = |why: &str| format!("frame at byte {at} of the snapshot's prefix: {why}");
        let mut head = [0u8; FRAME_HEADER_LEN as usize];
        file.read_exact_at(&mut head, at)
            .map_err(|e| bad(&e.to_string()))?;
        let (frame_len, crc) = split_frame_header(&head);
        let frame_end = at + FRAME_HEADER_LEN + u64::from(frame_len);
        if frame_len == 0 || frame_len as usize > MAX_ENTRY_LEN || frame_end > layout.end {
            return Err(bad("length out of range"));
        }
        let mut payload = vec![0u8; frame_len as usize];
        file.read_exact_at(&mut payload, at + FRAME_HEADER_LEN)
            .map_err(|e| bad(&e.to_string()))?;
        if crc32c::crc32c(&payload) != crc {
            return Err(bad("checksum mismatch"));
        }
        Ok(frame_end)
    };
    frame_at(HEADER_LEN)?;
    for _ in mark..layout.entries {
        at = frame_at(at)?;
    }
    if at != layout.end {
        return Err(format!(
            "the snapshot's last frames end at byte {at}, not at its prefix end {}",
            layout.end
        ));
    }
    Ok(index)
}

fn split_frame_header(head: &[u8; FRAME_HEADER_LEN as usize]) -> (u32, u32) {
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    (len, crc)
}

/// Where the scan stopped before the end of the file, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Offset of the damaged frame.
    pub(crate) offset: u64,
    /// What is wrong with it.
    pub(crate) reason: &'static str,
    /// Whether it is a genuinely incomplete last frame (what a crash during
    /// an append leaves), as opposed to damage with data after it.
    pub(crate) torn: bool,
}

/// A read-only scan of the frames.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Where the valid frames start (sparse).
    pub(crate) frames: FrameIndex,
    /// End of the last valid frame.
    pub(crate) end: u64,
    /// The first invalid frame, if any.
    pub(crate) damage: Option<Damage>,
    /// The Merkle frontier of the first requested entries' leaves.
    leaves: Frontier,
    /// An entry whose leaf could not be computed: (offset, index, why).
    leaf_error: Option<(u64, u64, String)>,
}

/// Scans the log at `path` without changing it: the file's total length
/// and its frames (for the repair subcommand). The header is checked for
/// the magic only (the context is returned, not compared).
pub(crate) fn inspect(path: &Path) -> Result<(u64, [u8; 32], Scan), StoreError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let display = path.display().to_string();
    if len < HEADER_LEN {
        return Err(StoreError::NotALog { path: display });
    }
    let mut head = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut head, 0)?;
    if head[..8] != FILE_MAGIC {
        return Err(StoreError::NotALog { path: display });
    }
    let mut context = [0u8; 32];
    context.copy_from_slice(&head[8..]);
    let scan = scan_frames(&file, len, HEADER_LEN, FrameIndex::default(), 0, None)?;
    Ok((len, context, scan))
}

/// Truncates the log at `path` to `offset` and syncs it (the repair
/// subcommand, after the operator confirmed).
pub(crate) fn truncate(path: &Path, offset: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(offset)?;
    file.sync_all()
}

/// Whether every byte of `file` from `from` to `len` is zero.
fn zeros_to_end(file: &File, from: u64, len: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = from;
    while pos < len {
        let n = usize::try_from(len - pos).map_or(buf.len(), |r| r.min(buf.len()));
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Scans the frames of `file` from `start` (where frame `frames.len()`
/// begins) to `len`, adding them to `frames`; hashes the leaves of the
/// first `leaves_wanted` entries with `leaf`.
fn scan_frames(
    file: &File,
    len: u64,
    start: u64,
    mut frames: FrameIndex,
    leaves_wanted: u64,
    leaf: Option<LeafFn<'_>>,
) -> Result<Scan, StoreError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(start))?;
    let mut leaves = Frontier::new();
    let mut leaf_error = None;
    let mut pos = start;
    let mut payload = Vec::new();
    let damage = loop {
        let remaining = len - pos;
        if remaining == 0 {
            break None;
        }
        if remaining < FRAME_HEADER_LEN {
            break Some(Damage {
                offset: pos,
                reason: "incomplete frame header",
                torn: true,
            });
        }
        let mut head = [0u8; FRAME_HEADER_LEN as usize];
        reader.read_exact(&mut head)?;
        let (frame_len, crc) = split_frame_header(&head);
        if frame_len == 0 || frame_len as usize > MAX_ENTRY_LEN {
            // The length itself is garbage, so where this frame would end is
            // unknown. A crash can leave zeros (a size update that beat the
            // data to disk), never a non-zero length out of range: that is
            // a damaged frame, whatever follows.
            let zeros = frame_len == 0
                && remaining <= FRAME_HEADER_LEN + MAX_ENTRY_LEN as u64
                && zeros_to_end(file, pos, len)?;
            break Some(Damage {
                offset: pos,
                reason: if zeros {
                    "zeros to the end of the file"
                } else {
                    "frame length out of range"
                },
                torn: zeros,
            });
        }
        let frame_end = pos + FRAME_HEADER_LEN + u64::from(frame_len);
        if frame_end > len {
            break Some(Damage {
                offset: pos,
                reason: "incomplete frame payload",
                torn: true,
            });
        }
        payload.resize(frame_len as usize, 0);
        reader.read_exact(&mut payload)?;
        if crc32c::crc32c(&payload) != crc {
            break Some(Damage {
                offset: pos,
                reason: "frame checksum mismatch",
                torn: frame_end == len,
            });
        }
        let index = frames.len();
        if index < leaves_wanted
            && leaf_error.is_none()
            && let Some(leaf) = leaf
        {
            match leaf(&payload) {
                Ok(h) => leaves.push(h),
                Err(e) => leaf_error = Some((pos, index, e)),
            }
        }
        frames.push(pos, frame_end);
        pos = frame_end;
    };
    Ok(Scan {
        frames,
        end: pos,
        damage,
        leaves,
        leaf_error,
    })
}

/// Makes a newly created file's directory entry durable.
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const CTX: [u8; 32] = [7; 32];

    fn open(path: &Path) -> (FileLogStore, OpenReport) {
        FileLogStore::open(path, CTX).expect("open")
    }

    #[test]
    fn append_read_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (store, report) = open(&path);
        assert!(report.created);
        assert_eq!(store.len(), 0);
        assert_eq!(store.append(b"one").unwrap(), 0);
        assert_eq!(store.append(b"two!").unwrap(), 1);
        assert_eq!(store.append(&[9u8; 1000]).unwrap(), 2);
        assert_eq!(
            store.read_range(1, 10).unwrap(),
            vec![b"two!".to_vec(), vec![9u8; 1000]]
        );
        assert!(store.read_range(3, 10).unwrap().is_empty());
        drop(store);

        let (store, report) = open(&path);
        assert!(!report.created);
        assert_eq!(report.entries, 3);
        assert_eq!(report.discarded_bytes, 0);
        assert_eq!(
            store.read_range(0, 2).unwrap(),
            vec![b"one".to_vec(), b"two!".to_vec()]
        );
        assert_eq!(store.append(b"four").unwrap(), 3);
    }

    /// Only every 16th frame's offset is kept: reads starting anywhere,
    /// across marks, before and after a reopen, return the right entries;
    /// a frame changed under the store is reported with its index.
    #[test]
    fn reads_from_any_index_with_sparse_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let entry = |i: usize| vec![i as u8; 1 + i % 97];
        let (store, _) = open(&path);
        for i in 0..300 {
            store.append(&entry(i)).unwrap();
        }
        let check = |store: &FileLogStore| {
            for (start, limit) in [(0, 1), (63, 2), (64, 1), (65, 70), (127, 200), (299, 5)] {
                let want: Vec<Vec<u8>> = (start..(start + limit).min(300)).map(entry).collect();
                assert_eq!(store.read_range(start as u64, limit).unwrap(), want);
            }
            assert!(store.read_range(300, 1).unwrap().is_empty());
            assert_eq!(store.len(), 300);
        };
        check(&store);
        drop(store);
        let (store, report) = open(&path);
        assert_eq!(report.entries, 300);
        check(&store);
        // Entry 70 (frame header 8 + payload 71 bytes after 70 frames).
        let at = HEADER_LEN + (0..70).map(|i| 8 + entry(i).len() as u64).sum::<u64>();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff], at + 8).unwrap();
        assert!(matches!(
            store.read_range(70, 1),
            Err(StoreError::Corrupt { index: 70, .. })
        ));
        assert_eq!(store.read_range(69, 1).unwrap(), vec![entry(69)]);
    }

    #[test]
    fn rejects_empty_and_oversized_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir.path().join("log"));
        assert!(matches!(store.append(b""), Err(StoreError::EntryLength(0))));
        let big = vec![0u8; MAX_ENTRY_LEN + 1];
        assert!(matches!(
            store.append(&big),
            Err(StoreError::EntryLength(_))
        ));
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn other_context_or_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        drop(open(&path));
        assert!(matches!(
            FileLogStore::open(&path, [8; 32]),
            Err(StoreError::ContextMismatch { .. })
        ));
        let foreign = dir.path().join("foreign");
        std::fs::write(&foreign, b"hello, this is not a log at all, no no no").unwrap();
        assert!(matches!(
            FileLogStore::open(&foreign, CTX),
            Err(StoreError::NotALog { .. })
        ));
        let short = dir.path().join("short");
        std::fs::write(&short, b"XY").unwrap();
        assert!(matches!(
            FileLogStore::open(&short, CTX),
            Err(StoreError::NotALog { .. })
        ));
    }

    #[test]
    fn torn_header_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"MAZU").unwrap();
        let (store, report) = open(&path);
        assert!(report.created);
        assert_eq!(store.append(b"x").unwrap(), 0);
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn torn_tails_are_truncated() {
        let frame = encode_frame(b"the last entry").unwrap();
        let mut bad_crc = frame.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("half a header", frame[..5].to_vec()),
            ("header, half a payload", frame[..12].to_vec()),
            ("whole frame, bad checksum", bad_crc),
            ("zeros", vec![0u8; 4096]),
        ];
        for (name, tail) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log");
            let (store, _) = open(&path);
            store.append(b"first").unwrap();
            store.append(b"second").unwrap();
            drop(store);
            let good_len = std::fs::metadata(&path).unwrap().len();
            append_raw(&path, &tail);

            let (store, report) = open(&path);
            assert_eq!(report.entries, 2, "{name}");
            assert_eq!(report.discarded_bytes, tail.len() as u64, "{name}");
            assert!(report.discarded_reason.is_some(), "{name}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len, "{name}");
            // The store keeps working after the repair.
            assert_eq!(store.append(b"third").unwrap(), 2, "{name}");
            drop(store);
            let (store, report) = open(&path);
            assert_eq!(report.discarded_bytes, 0, "{name}");
            assert_eq!(
                store.read_range(0, 9).unwrap(),
                vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()],
                "{name}"
            );
        }
    }

    #[test]
    fn corruption_before_the_tail_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (store, _) = open(&path);
        store.append(b"first").unwrap();
        store.append(b"second").unwrap();
        store.append(b"third").unwrap();
        drop(store);
        // Flip a payload byte of the first frame.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = HEADER_LEN as usize + FRAME_HEADER_LEN as usize;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = FileLogStore::open(&path, CTX).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { offset, .. } if offset == HEADER_LEN),
            "{err}"
        );
        // Nothing was truncated.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_garbage_length_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (store, _) = open(&path);
        store.append(b"first").unwrap();
        drop(store);
        append_raw(&path, &[0xff; 20]);
        let bytes = std::fs::read(&path).unwrap();
        let err = FileLogStore::open(&path, CTX).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { index: 1, .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    fn leaf(bytes: &[u8]) -> Result<Hash, String> {
        Ok(mazu_log::merkle::leaf_hash(bytes))
    }

    fn root_of(entries: &[&[u8]]) -> Hash {
        let tree = mazu_log::MerkleTree::from_leaves(entries.iter().map(|e| leaf(e).unwrap()));
        tree.root(entries.len() as u64).unwrap()
    }

    #[test]
    fn an_acknowledged_prefix_is_never_truncated() {
        let entries: [&[u8]; 3] = [b"first", b"second", b"third"];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (store, _) = open(&path);
        for e in entries {
            store.append(e).unwrap();
        }
        drop(store);
        let good = std::fs::read(&path).unwrap();
        let f: LeafFn<'_> = &leaf;
        let known = Known {
            entries: 3,
            source: "test",
            root: Some((3, root_of(&entries), f)),
            layout: None,
        };
        // Intact: opens.
        let (store, report) = FileLogStore::open_with(&path, CTX, &known).unwrap();
        assert_eq!(report.entries, 3);
        drop(store);
        // The last acknowledged frame cut short: a torn tail to a store that
        // knows nothing, a refusal to one that knows it was acknowledged.
        let cut = &good[..good.len() - 2];
        std::fs::write(&path, cut).unwrap();
        let err = FileLogStore::open_with(&path, CTX, &known).unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::AcknowledgedLost {
                    index: 2,
                    acknowledged: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("1 acknowledged entries would be lost"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), cut);
        // Another log with the same number of entries: the root differs.
        std::fs::write(&path, &good).unwrap();
        let other: [&[u8]; 3] = [b"first", b"second", b"THIRD"];
        let known = Known {
            root: Some((3, root_of(&other), f)),
            ..known
        };
        let err = FileLogStore::open_with(&path, CTX, &known).unwrap_err();
        assert!(
            matches!(err, StoreError::RootMismatch { size: 3, .. }),
            "{err}"
        );
        // A missing file with acknowledged entries is not created.
        std::fs::remove_file(&path).unwrap();
        let err = FileLogStore::open_with(&path, CTX, &known).unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
        assert!(!path.exists());
    }

    /// A prefix layout from the snapshot: used when its spot checks pass
    /// (its frames are then not read at open, and the known root is left
    /// to the caller); refused (everything scanned) when they fail; and
    /// `verify_prefix` catches what the spot checks do not read: a damaged
    /// frame inside the prefix, a mark that points to another frame.
    #[test]
    fn a_snapshot_layout_skips_the_prefix_scan_until_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let entry = |i: usize| vec![i as u8; 1 + i % 13];
        let (store, _) = open(&path);
        for i in 0..40 {
            store.append(&entry(i)).unwrap();
        }
        let layout = store.frame_layout(40).unwrap();
        assert!(store.frame_layout(39).is_none());
        for i in 40..45 {
            store.append(&entry(i)).unwrap();
        }
        drop(store);
        let f: LeafFn<'_> = &leaf;
        let open_with = |layout: &FrameLayout| {
            let known = Known {
                entries: 40,
                source: "test",
                root: Some((40, [9; 32], f)),
                layout: Some(layout),
            };
            FileLogStore::open_with(&path, CTX, &known).unwrap()
        };
        // Used: the wrong root is not checked here (the caller's job).
        let (store, report) = open_with(&layout);
        assert_eq!((report.entries, report.unverified_prefix), (45, 40));
        assert_eq!(report.layout_refused, None);
        assert_eq!(store.unverified_prefix(), 40);
        assert_eq!(
            store.read_range(17, 3).unwrap(),
            vec![entry(17), entry(18), entry(19)]
        );
        assert_eq!(store.read_range(43, 9).unwrap(), vec![entry(43), entry(44)]);
        store.verify_prefix().unwrap();
        assert_eq!(store.unverified_prefix(), 0);
        drop(store);

        // Refused by the spot checks: the whole log is scanned (and the
        // known root checked: here it is wrong, so the open fails).
        let refused = |edit: &dyn Fn(&mut FrameLayout), why: &str| {
            let mut l = layout.clone();
            edit(&mut l);
            let known = Known {
                entries: 40,
                source: "test",
                root: None,
                layout: Some(&l),
            };
            let (_, report) = FileLogStore::open_with(&path, CTX, &known).unwrap();
            assert_eq!(report.unverified_prefix, 0, "{why}");
            let reason = report.layout_refused.unwrap();
            assert!(reason.contains(why), "{reason}");
        };
        refused(&|l| l.end += 1, "not at its prefix end");
        refused(&|l| l.end = 1 << 30, "the log has");
        refused(&|l| l.marks[0] += 1, "malformed");
        refused(&|l| l.marks[2] += 9, "frame at byte");
        let bad_root = Known {
            entries: 40,
            source: "test",
            root: Some((40, [9; 32], f)),
            layout: None,
        };
        assert!(matches!(
            FileLogStore::open_with(&path, CTX, &bad_root),
            Err(StoreError::RootMismatch { .. })
        ));

        // A middle mark pointing at another frame passes the spot checks;
        // the verification finds it.
        let mut shifted = layout.clone();
        shifted.marks[1] += 8 + entry(16).len() as u64;
        let (store, report) = open_with(&shifted);
        assert_eq!(report.unverified_prefix, 40);
        let err = store.verify_prefix().unwrap_err();
        assert!(
            matches!(&err, StoreError::PrefixMismatch { entries: 40, .. })
                && err.to_string().contains("frame #16 starts at byte"),
            "{err}"
        );
        assert_eq!(store.unverified_prefix(), 40, "still unverified");
        drop(store);

        // A frame inside the prefix damaged after the snapshot: not read at
        // open, found by the verification.
        let at = HEADER_LEN + (0..20).map(|i| 8 + entry(i).len() as u64).sum::<u64>();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xee], at + 8).unwrap();
        let (store, report) = open_with(&layout);
        assert_eq!(report.unverified_prefix, 40);
        let err = store.verify_prefix().unwrap_err();
        assert!(err.to_string().contains("entry #20"), "{err}");
        assert!(matches!(
            store.read_range(20, 1),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_torn_tail_past_the_acknowledged_prefix_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (store, _) = open(&path);
        store.append(b"first").unwrap();
        store.append(b"second").unwrap();
        drop(store);
        let good_len = std::fs::metadata(&path).unwrap().len();
        let frame = encode_frame(b"never acknowledged").unwrap();
        append_raw(&path, &frame[..frame.len() - 3]);
        let known = Known {
            entries: 2,
            source: "test",
            root: None,
            layout: None,
        };
        let (_, report) = FileLogStore::open_with(&path, CTX, &known).unwrap();
        assert_eq!(report.entries, 2);
        assert_eq!(report.discarded_bytes, frame.len() as u64 - 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    }
}
