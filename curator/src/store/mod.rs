//! Durable storage of the registration log, behind the [`LogStore`] trait.
//!
//! The curator's whole state is a function of its log: an ordered list of
//! opaque entries (see [`crate::entry`]). A store only has to append entries
//! durably, read them back by index and say how many there are. The embedded
//! [`FileLogStore`] is the production implementation; [`MemoryLogStore`] serves
//! unit tests (and can simulate a failing disk). A database-backed store can be
//! added later without touching the rest of the service.
//!
//! All methods are blocking: call them from a dedicated thread or
//! `spawn_blocking`, never directly on the async executor.

mod file;
mod frame_index;
mod memory;

pub use file::{FILE_MAGIC, FileLogStore, Known, LeafFn, MAX_ENTRY_LEN, OpenReport};
pub(crate) use file::{inspect, truncate};
pub use frame_index::{FrameLayout, MARK_EVERY};
pub use memory::MemoryLogStore;

/// An append-only, durable list of byte entries.
///
/// Implementations are internally synchronized: `append` may run on one
/// thread while `read_range` and `len` run on others. Appends are expected to
/// come from a single writer (the curator serializes them), but concurrent
/// appends must still be safe.
pub trait LogStore: Send + Sync + core::fmt::Debug + 'static {
    /// Appends `entry` and returns its index. When this returns `Ok`, the entry
    /// is durable (it survives a crash or power loss). When it returns `Err`,
    /// the entry is not part of the log and the log is unchanged; a store that
    /// cannot guarantee that any more reports [`StoreError::Poisoned`] from
    /// then on.
    fn append(&self, entry: &[u8]) -> Result<u64, StoreError>;

    /// Up to `limit` entries starting at index `start` (fewer at the end of the
    /// log, none if `start >= len()`).
    fn read_range(&self, start: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The number of entries (the index the next append gets).
    fn len(&self) -> u64;

    /// Whether the log has no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a failed write left the store unable to accept appends.
    fn is_poisoned(&self) -> bool {
        false
    }

    /// Where the frames of the whole log lie, if it has `entries` entries
    /// and a byte layout (what the state snapshot keeps so that the next
    /// start need not scan them); `None` otherwise.
    fn frame_layout(&self, _entries: u64) -> Option<FrameLayout> {
        None
    }

    /// Entries at the start of the log whose frames were not read when the
    /// store was opened (their layout came from the state snapshot): until
    /// [`verify_prefix`](Self::verify_prefix) passes, they are only as good
    /// as the snapshot's word. 0 for a store that read everything.
    fn unverified_prefix(&self) -> u64 {
        0
    }

    /// Reads every frame of the [unverified prefix](Self::unverified_prefix)
    /// (checksums) and checks that they lie where the layout said; then the
    /// prefix is verified. An error says what differs.
    fn verify_prefix(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error from the operating system.
    #[error("log I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a Mazu log (wrong magic) or its header is damaged.
    #[error("{path} is not a Mazu curator log (bad header)")]
    NotALog {
        /// The file.
        path: String,
    },
    /// The log was written under another CRS than the one configured.
    #[error(
        "the log {path} was written under CRS {found}, but the configured CRS is {expected}: \
         refusing to mix them (use the original CRS or a new data directory)"
    )]
    ContextMismatch {
        /// The file.
        path: String,
        /// Hex of the context (CRS digest) configured now.
        expected: String,
        /// Hex of the context recorded in the log header.
        found: String,
    },
    /// A damaged frame after the acknowledged prefix that is not a
    /// genuinely incomplete last frame (data follows it, or its length is
    /// out of range and not zero): corruption, not a crash. The store
    /// refuses to discard anything on its own.
    #[error(
        "log {path} is corrupt at byte offset {offset}, entry #{index} ({reason}), and {trailing} \
         bytes from there to the end of the file would be lost; this is not a torn tail from a \
         crash: refusing to start, nothing was changed (run `mazu-curator repair --data-dir \
         DIR` to see the damage and choose what to do; see docs/curator.md, \"Operations\")"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// Offset of the damaged frame.
        offset: u64,
        /// Index the damaged entry would have.
        index: u64,
        /// What is wrong with it.
        reason: &'static str,
        /// Bytes after the damaged frame's start.
        trailing: u64,
    },
    /// Entries that were acknowledged are missing or damaged.
    #[error(
        "log {path} is damaged at byte offset {offset}, entry #{index} ({reason}), but \
         {acknowledged} entries were acknowledged ({source_desc}): {lost} acknowledged entries \
         would be lost. Refusing to start; nothing was changed (restore the log from a backup, or \
         run `mazu-curator repair --data-dir DIR` to see the damage and choose what to do; see \
         docs/curator.md, \"Operations\")",
        lost = acknowledged.saturating_sub(*index)
    )]
    AcknowledgedLost {
        /// The file.
        path: String,
        /// Offset of the first damaged or missing frame.
        offset: u64,
        /// Its entry index (= the number of intact entries before it).
        index: u64,
        /// What is wrong.
        reason: String,
        /// Entries known acknowledged.
        acknowledged: u64,
        /// Where that number comes from.
        source_desc: String,
    },
    /// The acknowledged prefix parses but is not the log the acknowledged
    /// checkpoint commits to (rewritten or replaced).
    #[error(
        "log {path}: the first {size} entries are not the ones the acknowledged checkpoint \
         commits to ({source_desc}): {detail}. Refusing to start; nothing was changed (see \
         docs/curator.md, \"Operations\")"
    )]
    RootMismatch {
        /// The file.
        path: String,
        /// The checkpoint's size.
        size: u64,
        /// What differs.
        detail: String,
        /// Where the checkpoint comes from.
        source_desc: String,
    },
    /// The log file is gone although other state proves it had entries.
    #[error(
        "the log {path} is missing, but {acknowledged} entries were acknowledged \
         ({source_desc}): refusing to start as an empty registry. Restore the log (and keep the \
         other files); to really start a new, empty log, move the whole data directory aside \
         (see docs/curator.md, \"Operations\")"
    )]
    Missing {
        /// The file.
        path: String,
        /// Entries known acknowledged.
        acknowledged: u64,
        /// Where that number comes from.
        source_desc: String,
    },
    /// The acknowledged checkpoint cannot be read or does not verify with
    /// the checkpoint key.
    #[error(
        "the acknowledged checkpoint {path} is unusable ({reason}): it records how much of the \
         log was acknowledged, so the curator cannot start without it being checked. If the \
         checkpoint key or --checkpoint-origin changed, restore the original ones; see \
         docs/curator.md, \"Operations\""
    )]
    Acknowledged {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The frames of a prefix the store did not scan at open are not where
    /// (or not what) the state snapshot's frame index says.
    #[error(
        "log {path}: the first {entries} entries are not the frames the state snapshot recorded \
         ({detail}); nothing was changed (run `mazu-curator repair --data-dir DIR` to see the \
         damage and choose what to do; see docs/curator.md, \"Operations\")"
    )]
    PrefixMismatch {
        /// The file.
        path: String,
        /// Entries in the prefix.
        entries: u64,
        /// What differs.
        detail: String,
    },
    /// An entry longer than [`MAX_ENTRY_LEN`] or empty.
    #[error("entry length {0} out of range (1..={MAX_ENTRY_LEN})")]
    EntryLength(usize),
    /// An earlier write or sync failed and could not be rolled back: the
    /// on-disk state is unknown, so the store accepts no more appends until the
    /// process restarts and re-reads the file.
    #[error("the log is unavailable after an earlier write failure; restart the curator")]
    Poisoned,
    /// A simulated failure ([`MemoryLogStore::fail_next_append`]).
    #[error("simulated storage failure")]
    Simulated,
}
